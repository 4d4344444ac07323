"""The classic engine with the texture-transfer stage, measured on the evaluation photos.

    python benchmarks/texture_transfer.py [--tags portrait-art,photo-photo] [--out DIR]
        [--no-baseline] [--seed 0]

Until the stage is wired into ``ClassicEngine``, a wrapper engine runs ClassicEngine and
then ``texture.transfer_texture`` on each output, with the strength from
``artistic.artistic_strength(reference)`` (times ``style_strength`` when given) and the
faces masked by ``texture.face_protection_mask``. Both it and the plain classic engine
(the baseline) go through ``evaluation.harness.run_evaluation``, so times are whole
remix calls per 2K variation. Prints the harness tables, the stage's strength per
reference, and writes results CSVs and contact sheets to --out.

The photos come from --root (default $PHOTOREMIX_PHOTOS_DIR, else ../shared/data/photos
beside the repository). Outputs made from them must never be committed or published:
--out must lie outside the repository (default: <tmp>/photoremix-texture).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from photoremix.engines.base import ProgressCallback, RemixOutput, RemixRequest
from photoremix.engines.classic import ClassicEngine
from photoremix.engines.classic.artistic import artistic_strength
from photoremix.engines.classic.texture import face_protection_mask, transfer_texture, warm_up
from photoremix.evaluation.harness import (
    Evaluation,
    EvaluationError,
    load_cases,
    run_evaluation,
    summarize,
    summary_table,
    write_contact_sheets,
    write_csv,
)
from photoremix.imaging import decode_image
from photoremix.vision.faces import detect_faces

REPOSITORY = Path(__file__).resolve().parents[1]


class TexturedClassicEngine:
    """ClassicEngine followed by the texture-transfer stage on every output."""

    name = "classic+texture"

    def __init__(self) -> None:
        self.classic = ClassicEngine()
        warm_up()  # the harness's own warm-up pair is a photo: the stage would stay off

    def remix(
        self, request: RemixRequest, progress: ProgressCallback | None = None
    ) -> list[RemixOutput]:
        outputs = self.classic.remix(request, progress)
        started = time.perf_counter()
        strength = artistic_strength(request.reference)
        if request.style_strength is not None:
            strength *= request.style_strength
        if strength <= 0:
            return outputs
        faces = request.faces if request.faces is not None else detect_faces(request.content)
        mask = face_protection_mask(faces, request.content.shape, request.output_size)
        shared = time.perf_counter() - started
        for output in outputs:
            start = time.perf_counter()
            output.image = transfer_texture(
                output.image,
                request.reference,
                strength=strength,
                face_mask=mask,
                seed=output.report.seed,
            )
            output.report.applied["texture_strength"] = round(strength, 3)
            output.report.timings["texture"] = time.perf_counter() - start + shared
        return outputs


def default_root() -> Path:
    configured = os.environ.get("PHOTOREMIX_PHOTOS_DIR")
    return Path(configured) if configured else REPOSITORY.parent / "shared" / "data" / "photos"


def _print_stage_report(
    console: Console, root: Path, textured: Evaluation, baseline: Evaluation | None
) -> None:
    """Per case: the stage's strength, and texture / structure without and with it."""
    before = {run.index: run.results[0].metrics for run in baseline.runs} if baseline else {}
    strengths: dict[str, float] = {}
    console.print("per case (variation 0): strength | texture, structure (classic -> +texture)")
    for run in textured.runs:
        reference = run.case.reference
        if reference not in strengths:
            strengths[reference] = artistic_strength(decode_image(root / reference))
        after = run.results[0].metrics
        was = before.get(run.index)
        texture = f"{was.texture:.3f} -> {after.texture:.3f}" if was else f"{after.texture:.3f}"
        structure = (
            f"{was.structure:.3f} -> {after.structure:.3f}" if was else f"{after.structure:.3f}"
        )
        console.print(
            f"  {run.case.tag:14s} {run.case.content:44s} {reference:38s} "
            f"{strengths[reference]:.2f} | {texture}, {structure}"
        )


def main(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=default_root())
    parser.add_argument("--tags", default="portrait-art,photo-photo")
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "photoremix-texture"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain classic run")
    options = parser.parse_args(arguments)
    console = Console(width=150)

    out = options.out.resolve()
    if out == REPOSITORY or REPOSITORY in out.parents:
        console.print(
            f"[red]--out {out} is inside the repository; outputs made from the "
            "evaluation photos must stay out of it[/red]"
        )
        return 2
    out.mkdir(parents=True, exist_ok=True)
    try:
        cases = load_cases(options.root / "cases.json", options.root, options.tags.split(","))
    except EvaluationError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2

    engine = TexturedClassicEngine()
    runs: list[tuple[str, Evaluation]] = []
    engines = [engine] if options.no_baseline else [ClassicEngine(), engine]
    for candidate in engines:
        console.print(f"running {candidate.name} on {len(cases)} cases ...")
        evaluation = run_evaluation(
            cases,
            candidate,
            {},
            seed=options.seed,
            thumbnail_height=256,
            on_case=lambda run, done, total: console.print(
                f"  [{done}/{total}] {run.case.content} {run.results[0].seconds:.2f} s"
            ),
        )
        runs.append((candidate.name, evaluation))
        console.print(summary_table(evaluation, summarize(evaluation)))
        folder = out / candidate.name.replace("+", "_")
        folder.mkdir(exist_ok=True)
        write_csv(evaluation, folder / "results.csv")
        for path in write_contact_sheets(evaluation, folder):
            console.print(f"contact sheet: {path}")

    evaluations = dict(runs)
    baseline = evaluations.get(ClassicEngine.name)
    _print_stage_report(console, options.root, evaluations[engine.name], baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
