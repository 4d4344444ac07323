"""Run remix methods over a list of cases and report the metrics: table, CSV, contact sheets.

A case is a (content, reference, tag) triple from a ``cases.json`` file. For each case the
content's faces are detected once, then every method renders at the 2K output size:

- the engine through ``Engine.remix`` with those faces (seconds = call time / num_outputs);
- each peer on the content resized to the output size with INTER_CUBIC (resize not timed).

Each output is scored with ``metrics.evaluate_output``. Images follow the package
convention: (H, W, 3) uint8 sRGB RGB.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rich.table import Table

from photoremix.engines.base import Engine, EngineError, RemixRequest
from photoremix.evaluation.metrics import OutputMetrics, evaluate_output
from photoremix.evaluation.peers import Peer
from photoremix.vision.faces import SAME_PERSON_DISTANCE, detect_faces


class EvaluationError(Exception):
    """The evaluation cannot go on; the message says which input to fix."""


@dataclass(frozen=True)
class EvalCase:
    """One remix case; ``content`` and ``reference`` are paths relative to ``root``."""

    root: Path
    content: str
    reference: str
    tag: str

    @property
    def content_path(self) -> Path:
        return self.root / self.content

    @property
    def reference_path(self) -> Path:
        return self.root / self.reference


@dataclass
class MethodResult:
    """One output of one method on one case.

    seconds: render time per variation (engine: remix call / num_outputs; peer: the call).
    thumbnail: (h, w, 3) uint8 copy of the output, when thumbnails were asked for.
    """

    method: str
    variation: int
    seconds: float
    metrics: OutputMetrics
    thumbnail: np.ndarray | None = None


@dataclass
class CaseRun:
    """Everything measured on one case.

    output_size: (width, height) every method rendered at.
    faces: number of faces detected in the content; detect_seconds: time to detect them.
    """

    index: int
    case: EvalCase
    output_size: tuple[int, int]
    faces: int
    detect_seconds: float
    results: list[MethodResult] = field(default_factory=list)
    content_thumbnail: np.ndarray | None = None
    reference_thumbnail: np.ndarray | None = None


@dataclass
class Evaluation:
    """A finished run. warmup_seconds: one-off costs kept out of the per-case timings."""

    methods: list[str]
    runs: list[CaseRun]
    warmup_seconds: dict[str, float] = field(default_factory=dict)


CaseCallback = Callable[[CaseRun, int, int], None]


def load_cases(
    cases_path: Path,
    root: Path | None = None,
    tags: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[EvalCase]:
    """Read a cases file: a JSON list of {"content", "reference", "tag"}.

    root: folder the paths are relative to (default: the cases file's folder).
    tags: keep only these tags; limit: keep the first ``limit`` cases after that.
    Raises EvaluationError for an unreadable file, a malformed entry, an unknown tag or a
    missing image.
    """
    root = cases_path.parent if root is None else root
    try:
        entries = json.loads(cases_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvaluationError(f"cannot read cases file {cases_path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{cases_path} is not valid JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise EvaluationError(f"{cases_path} must hold a JSON list of cases")
    cases = []
    for number, entry in enumerate(entries):
        keys = ("content", "reference", "tag")
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in keys):
            raise EvaluationError(
                f"{cases_path}: case {number} must be an object with string fields "
                f"'content', 'reference' and 'tag', got {entry!r}"
            )
        cases.append(EvalCase(root, entry["content"], entry["reference"], entry["tag"]))

    if tags:
        unknown = sorted(set(tags) - {case.tag for case in cases})
        if unknown:
            known = ", ".join(sorted({case.tag for case in cases}))
            raise EvaluationError(f"no case has tag(s) {', '.join(unknown)}; tags are: {known}")
        cases = [case for case in cases if case.tag in tags]
    if limit is not None:
        cases = cases[:limit]

    missing = [
        str(path)
        for case in cases
        for path in (case.content_path, case.reference_path)
        if not path.is_file()
    ]
    if missing:
        raise EvaluationError(
            f"{len(missing)} image(s) listed in {cases_path} not found under {root} "
            f"(is --root right?): {', '.join(missing[:5])}"
        )
    return cases


def thumbnail(image: np.ndarray, height: int) -> np.ndarray:
    """``image`` scaled to ``height`` pixels high, aspect kept; (height, w, 3) uint8."""
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _synthetic_pair() -> tuple[np.ndarray, np.ndarray]:
    """A small content/reference pair: gradients plus noise, different palettes."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 96, dtype=np.float32)[None, :, None]
    rows = np.linspace(0, 1, 64, dtype=np.float32)[:, None, None]
    content = 255 * (ramp * [0.9, 0.5, 0.2] + rows * [0.1, 0.4, 0.7])
    reference = 255 * (ramp * [0.2, 0.3, 0.8] + rows * [0.6, 0.2, 0.1])
    noise = rng.normal(0, 8, size=(2, 64, 96, 3))
    return (
        np.clip(content + noise[0], 0, 255).astype(np.uint8),
        np.clip(reference + noise[1], 0, 255).astype(np.uint8),
    )


def warm_up(engine: Engine | None) -> dict[str, float]:
    """Pay one-off costs (numba JIT, model loading) before anything is timed.

    Returns seconds by what was warmed: "engine" (one remix of a small synthetic pair) and
    "face detector".
    """
    content, reference = _synthetic_pair()
    seconds = {}
    start = time.perf_counter()
    detect_faces(content)
    seconds["face detector"] = time.perf_counter() - start
    if engine is not None:
        start = time.perf_counter()
        engine.remix(
            RemixRequest(
                content=content,
                reference=reference,
                output_size=(content.shape[1], content.shape[0]),
                faces=(),
            )
        )
        seconds["engine"] = time.perf_counter() - start
    return seconds


def _decode(path: Path) -> np.ndarray:
    from photoremix.imaging import ImageError, decode_image

    try:
        return decode_image(path)
    except (ImageError, OSError) as exc:
        raise EvaluationError(f"cannot use {path}: {exc}") from exc


def run_evaluation(
    cases: Sequence[EvalCase],
    engine: Engine | None,
    peers: Mapping[str, Peer],
    *,
    variations: int = 1,
    seed: int = 0,
    style_strength: float | None = None,
    all_variations: bool = False,
    thumbnail_height: int | None = None,
    on_case: CaseCallback | None = None,
) -> Evaluation:
    """Render every case with the engine (if any) and every peer, and score the outputs.

    variations: ``num_outputs`` asked of the engine; metrics are taken on variation 0
        unless ``all_variations``.
    thumbnail_height: keep thumbnails of inputs and outputs this high (for contact sheets).
    on_case: called after each case with (run, cases done, cases total).
    Raises EvaluationError when an image cannot be decoded or the engine fails.
    """
    from photoremix.imaging import output_size_2k

    methods = ([engine.name] if engine is not None else []) + list(peers)
    evaluation = Evaluation(methods=methods, runs=[], warmup_seconds=warm_up(engine))
    for index, case in enumerate(cases):
        content = _decode(case.content_path)
        reference = _decode(case.reference_path)
        output_size = output_size_2k(content.shape[1], content.shape[0])

        start = time.perf_counter()
        faces = detect_faces(content)
        run = CaseRun(
            index=index,
            case=case,
            output_size=output_size,
            faces=len(faces),
            detect_seconds=time.perf_counter() - start,
        )
        if thumbnail_height is not None:
            run.content_thumbnail = thumbnail(content, thumbnail_height)
            run.reference_thumbnail = thumbnail(reference, thumbnail_height)

        engine_request = RemixRequest(
            content=content,
            reference=reference,
            output_size=output_size,
            faces=faces,
            num_outputs=variations,
            seed=seed,
            style_strength=style_strength,
        )
        renders = _render(case, engine_request, engine, peers, all_variations)
        for method, variation, seconds, output in renders:
            if output.shape != (output_size[1], output_size[0], 3) or output.dtype != np.uint8:
                raise EvaluationError(
                    f"{method} returned a {output.dtype} {output.shape} image for "
                    f"{case.content}, expected uint8 {output_size[1]}x{output_size[0]}x3"
                )
            run.results.append(
                MethodResult(
                    method=method,
                    variation=variation,
                    seconds=seconds,
                    metrics=evaluate_output(content, reference, output, faces),
                    thumbnail=None
                    if thumbnail_height is None
                    else thumbnail(output, thumbnail_height),
                )
            )
        evaluation.runs.append(run)
        if on_case is not None:
            on_case(run, index + 1, len(cases))
    return evaluation


def _render(
    case: EvalCase,
    request: RemixRequest,
    engine: Engine | None,
    peers: Mapping[str, Peer],
    all_variations: bool,
) -> Iterator[tuple[str, int, float, np.ndarray]]:
    """Yield (method, variation, seconds per variation, output) for each output to score.

    A generator, so each output is scored (untimed) before the next method runs.
    """
    if engine is not None:
        start = time.perf_counter()
        try:
            outputs = engine.remix(request)
        except EngineError as exc:
            raise EvaluationError(f"{engine.name} failed on {case.content}: {exc}") from exc
        seconds = (time.perf_counter() - start) / request.num_outputs
        for variation, output in enumerate(outputs if all_variations else outputs[:1]):
            yield engine.name, variation, seconds, output.image

    resized = cv2.resize(request.content, request.output_size, interpolation=cv2.INTER_CUBIC)
    for name, peer in peers.items():
        start = time.perf_counter()
        output = peer(resized, request.reference)
        yield name, 0, time.perf_counter() - start, output


@dataclass(frozen=True)
class MethodSummary:
    """Aggregates of one method over the cases of one tag ("all" = every case).

    style, texture, structure, seconds_per_variation: medians over outputs.
    identity_median, identity_worst: median and maximum distance over every content face
        of every output (NaN without faces).
    """

    method: str
    tag: str
    outputs: int
    style: float
    texture: float
    structure: float
    identity_median: float
    identity_worst: float
    faces: int
    faces_kept: int
    seconds_per_variation: float

    @property
    def faces_kept_percent(self) -> float:
        return 100.0 * self.faces_kept / self.faces if self.faces else float("nan")


ALL_TAGS = "all"


def _median(values: Sequence[float]) -> float:
    # NaN marks "undefined" (e.g. style ratio when content == reference): leave it out.
    finite = [value for value in values if not math.isnan(value)]
    return float(np.median(finite)) if finite else float("nan")


def summarize(evaluation: Evaluation) -> list[MethodSummary]:
    """One summary per (tag, method): "all" first, then each tag in sorted order."""
    tags = [ALL_TAGS, *sorted({run.case.tag for run in evaluation.runs})]
    summaries = []
    for tag in tags:
        runs = [run for run in evaluation.runs if tag in (ALL_TAGS, run.case.tag)]
        for method in evaluation.methods:
            results = [result for run in runs for result in run.results if result.method == method]
            distances = [face.distance for r in results for face in r.metrics.faces]
            summaries.append(
                MethodSummary(
                    method=method,
                    tag=tag,
                    outputs=len(results),
                    style=_median([r.metrics.style for r in results]),
                    texture=_median([r.metrics.texture for r in results]),
                    structure=_median([r.metrics.structure for r in results]),
                    identity_median=_median(distances),
                    identity_worst=max(distances) if distances else float("nan"),
                    faces=len(distances),
                    faces_kept=sum(r.metrics.faces_kept for r in results),
                    seconds_per_variation=_median([r.seconds for r in results]),
                )
            )
    return summaries


def _number(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def summary_table(evaluation: Evaluation, summaries: Sequence[MethodSummary]) -> Table:
    """A rich table with one row per method, one section per tag."""
    detect = [run.detect_seconds for run in evaluation.runs]
    warmup = ", ".join(f"{name} {s:.2f} s" for name, s in evaluation.warmup_seconds.items())
    table = Table(
        title=f"photoremix evaluation: {len(evaluation.runs)} cases",
        caption=(
            f"style/texture: 0 = reference, 1 = unchanged content (lower is better); "
            f"structure: 1 = content's structure; identity > {SAME_PERSON_DISTANCE} = "
            f"another person.\nface detection: median {_number(_median(detect))} s, "
            f"total {sum(detect):.1f} s; warm-up: {warmup or 'none'}"
        ),
    )
    for column in ("tag", "method", "outputs"):
        table.add_column(column)
    for column in (
        "style ↓",
        "texture ↓",
        "structure ↑",
        "identity ↓",
        "identity worst ↓",
        "faces kept",
        "s / variation",
    ):
        table.add_column(column, justify="right")
    previous_tag = None
    for summary in summaries:
        if previous_tag is not None and summary.tag != previous_tag:
            table.add_section()
        previous_tag = summary.tag
        kept = f"{summary.faces_kept_percent:.0f}% of {summary.faces}" if summary.faces else "-"
        table.add_row(
            summary.tag,
            summary.method,
            str(summary.outputs),
            _number(summary.style),
            _number(summary.texture),
            _number(summary.structure, 3),
            _number(summary.identity_median),
            _number(summary.identity_worst),
            kept,
            _number(summary.seconds_per_variation),
        )
    return table


CSV_COLUMNS = (
    "case",
    "tag",
    "content",
    "reference",
    "method",
    "variation",
    "output_width",
    "output_height",
    "seconds",
    "detect_seconds",
    "style",
    "texture",
    "structure",
    "faces",
    "faces_kept",
    "identity_median",
    "identity_worst",
    "face_distances",
)


def _csv_number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6g}"


def write_csv(evaluation: Evaluation, path: Path) -> None:
    """One row per case, method and scored variation, columns ``CSV_COLUMNS``.

    Undefined numbers (NaN: no faces, or content == reference) are written as empty cells;
    face_distances lists each content face's distance, ';'-separated.
    """
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for run in evaluation.runs:
            for result in run.results:
                metrics = result.metrics
                writer.writerow(
                    [
                        run.index,
                        run.case.tag,
                        run.case.content,
                        run.case.reference,
                        result.method,
                        result.variation,
                        run.output_size[0],
                        run.output_size[1],
                        _csv_number(result.seconds),
                        _csv_number(run.detect_seconds),
                        _csv_number(metrics.style),
                        _csv_number(metrics.texture),
                        _csv_number(metrics.structure),
                        run.faces,
                        metrics.faces_kept,
                        _csv_number(metrics.identity_median),
                        _csv_number(metrics.identity_worst),
                        ";".join(f"{face.distance:.4f}" for face in metrics.faces),
                    ]
                )


# Contact sheet layout: every cell is a CELL_WIDTH x CELL_HEIGHT box holding the image
# (scaled to fit, centred) above a CAPTION_HEIGHT bar with two lines of text.
CELL_WIDTH = 384
CELL_HEIGHT = 256
CAPTION_HEIGHT = 40
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.42
_BACKGROUND = (40, 40, 40)


def _fit_text(text: str, width: int) -> str:
    # putText does not clip; shorten until the line fits its cell.
    # Hershey fonts are ASCII only, so "~" marks the cut.
    while len(text) > 1 and cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0] > width:
        text = text[:-2] + "~"
    return text


def _cell(image: np.ndarray | None, lines: Sequence[str]) -> np.ndarray:
    """One (CELL_HEIGHT + CAPTION_HEIGHT, CELL_WIDTH, 3) uint8 cell."""
    cell = np.full((CELL_HEIGHT + CAPTION_HEIGHT, CELL_WIDTH, 3), _BACKGROUND, dtype=np.uint8)
    if image is not None:
        scale = min(CELL_WIDTH / image.shape[1], CELL_HEIGHT / image.shape[0])
        width = max(1, round(image.shape[1] * scale))
        height = max(1, round(image.shape[0] * scale))
        fitted = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        top, left = (CELL_HEIGHT - height) // 2, (CELL_WIDTH - width) // 2
        cell[top : top + height, left : left + width] = fitted
    cell[CELL_HEIGHT:] = 0
    for number, line in enumerate(lines[:2]):
        baseline = CELL_HEIGHT + 16 + 17 * number
        text = _fit_text(line, CELL_WIDTH - 8)
        cv2.putText(cell, text, (4, baseline), _FONT, _FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    return cell


def _caption(result: MethodResult) -> str:
    metrics = result.metrics
    identity = _number(metrics.identity_worst) if metrics.faces else "-"
    return f"style {_number(metrics.style)}  struct {_number(metrics.structure)}  id {identity}"


def contact_sheet(runs: Sequence[CaseRun], methods: Sequence[str]) -> np.ndarray:
    """Rows = cases, columns = input | reference | each method's output (variation 0).

    Needs runs made with ``thumbnail_height``. Returns an (rows * 296, (2 + methods) * 384,
    3) uint8 RGB image; a method missing from a case leaves an empty cell.
    """
    rows = []
    for run in runs:
        if run.content_thumbnail is None or run.reference_thumbnail is None:
            raise ValueError("contact sheets need runs made with thumbnail_height set")
        by_method = {r.method: r for r in run.results if r.variation == 0}
        cells = [
            _cell(run.content_thumbnail, [f"input {run.case.content}", f"faces {run.faces}"]),
            _cell(run.reference_thumbnail, [f"reference {run.case.reference}", run.case.tag]),
        ]
        for method in methods:
            result = by_method.get(method)
            if result is None:
                cells.append(_cell(None, [method, "no output"]))
            else:
                cells.append(_cell(result.thumbnail, [method, _caption(result)]))
        rows.append(np.hstack(cells))
    return np.vstack(rows)


def write_contact_sheets(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """One JPEG per tag, ``contact-<tag>.jpg`` in ``out_dir``; returns the paths written."""
    paths = []
    for tag in sorted({run.case.tag for run in evaluation.runs}):
        runs = [run for run in evaluation.runs if run.case.tag == tag]
        sheet = contact_sheet(runs, evaluation.methods)
        path = out_dir / f"contact-{re.sub(r'[^A-Za-z0-9_.-]+', '_', tag)}.jpg"
        bgr = cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 88]):
            raise EvaluationError(f"cannot write {path}")
        paths.append(path)
    return paths
