"""The classic engine's texture-transfer stage, before and after, on the evaluation photos.

    python benchmarks/texture_transfer.py [--tags portrait-art,photo-photo] [--out DIR]
        [--no-baseline] [--seed 0]

Runs ``ClassicEngine(texture=False)`` (the baseline: colour and tone only) and
``ClassicEngine()`` (with the stage, as served) through
``evaluation.harness.run_evaluation``, so times are whole remix calls per 2K variation.
Prints the harness tables, then per case the stage's strength (``applied["texture"]``)
and texture / structure without and with it, and writes results CSVs and contact sheets
to --out/<engine>/. For photo references the stage is off, so both runs must score the
same; the per-case report flags a case where they do not.

The photos come from --root (default $PHOTOREMIX_PHOTOS_DIR, else ../shared/data/photos
beside the repository). Outputs made from them must never be committed or published:
--out must lie outside the repository (default: <tmp>/photoremix-texture).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from photoremix.engines.base import ProgressCallback, RemixOutput, RemixRequest
from photoremix.engines.classic import ClassicEngine
from photoremix.engines.classic.artistic import artistic_strength
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

REPOSITORY = Path(__file__).resolve().parents[1]


class Baseline:
    """``ClassicEngine(texture=False)`` under its own name, for the tables."""

    name = "classic-no-texture"

    def __init__(self) -> None:
        self.engine = ClassicEngine(texture=False)

    def remix(
        self, request: RemixRequest, progress: ProgressCallback | None = None
    ) -> list[RemixOutput]:
        return self.engine.remix(request, progress)


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
        flag = ""
        if (
            was
            and strengths[reference] == 0
            and (was.style, was.texture, was.structure)
            != (
                after.style,
                after.texture,
                after.structure,
            )
        ):
            flag = "  [red]stage off but the output changed[/red]"
        console.print(
            f"  {run.case.tag:14s} {run.case.content:44s} {reference:38s} "
            f"{strengths[reference]:.2f} | {texture}, {structure}{flag}"
        )


def main(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=default_root())
    parser.add_argument("--tags", default="portrait-art,photo-photo")
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "photoremix-texture"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the classic-no-texture run"
    )
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

    engine = ClassicEngine()
    runs: list[tuple[str, Evaluation]] = []
    engines = [engine] if options.no_baseline else [Baseline(), engine]
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
        folder = out / candidate.name
        folder.mkdir(exist_ok=True)
        write_csv(evaluation, folder / "results.csv")
        for path in write_contact_sheets(evaluation, folder):
            console.print(f"contact sheet: {path}")

    evaluations = dict(runs)
    baseline = evaluations.get(Baseline.name)
    _print_stage_report(console, options.root, evaluations[engine.name], baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
