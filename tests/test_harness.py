"""End-to-end behaviour of the evaluation harness on tiny synthetic cases."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import photoremix.imaging
from photoremix.engines.base import EngineError, ImageReport, RemixOutput, RemixRequest
from photoremix.evaluation.command import eval_command
from photoremix.evaluation.harness import (
    ALL_TAGS,
    CAPTION_HEIGHT,
    CELL_HEIGHT,
    CELL_WIDTH,
    CSV_COLUMNS,
    EvalCase,
    EvaluationError,
    load_cases,
    run_evaluation,
    summarize,
    summary_table,
    write_contact_sheets,
    write_csv,
)
from photoremix.evaluation.metrics import style_ratio
from photoremix.evaluation.peers import available_peers, match_histograms

# (content colour, reference colour, tag) of the synthetic cases, RGB.
CASES = [
    ((200, 60, 40), (40, 80, 200), "warm-to-cool"),
    ((60, 180, 70), (220, 200, 60), "warm-to-cool"),
    ((90, 90, 160), (230, 140, 40), "cool-to-warm"),
]


def textured(colour: tuple[int, int, int], seed: int, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8: a colour with a gradient and noise, so every metric is defined."""
    width, height = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-40, 40, width, dtype=np.float32)[None, :, None]
    image = np.asarray(colour, dtype=np.float32) + ramp + rng.normal(0, 12, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def cases_file(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    entries = []
    for number, (content_colour, reference_colour, tag) in enumerate(CASES):
        content = textured(content_colour, number, (96, 64))
        reference = textured(reference_colour, 100 + number, (80, 80))
        for name, image in ((f"in{number}.png", content), (f"ref{number}.png", reference)):
            cv2.imwrite(str(root / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        entries.append({"content": f"in{number}.png", "reference": f"ref{number}.png", "tag": tag})
    path = root / "cases.json"
    path.write_text(json.dumps(entries))
    return path


class ResizeEngine:
    """Returns the content resized to the output size, brightened by 5 per variation."""

    name = "resize"

    def __init__(self) -> None:
        self.requests: list[RemixRequest] = []

    def remix(self, request: RemixRequest, progress: object = None) -> list[RemixOutput]:
        self.requests.append(request)
        resized = cv2.resize(request.content, request.output_size, interpolation=cv2.INTER_CUBIC)
        return [
            RemixOutput(
                image=cv2.add(resized, np.full_like(resized, 5 * variation)),
                report=ImageReport(self.name, request.seed + variation, variation, "resize"),
            )
            for variation in range(request.num_outputs)
        ]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        return list(reader)


def test_evaluation_end_to_end(cases_file: Path, tmp_path: Path) -> None:
    engine = ResizeEngine()
    cases = load_cases(cases_file)
    evaluation = run_evaluation(
        cases,
        engine,
        {"match_histograms": match_histograms},
        variations=2,
        seed=7,
        thumbnail_height=CELL_HEIGHT,
    )

    # The engine was warmed up once, then called once per case with the detected faces.
    assert len(engine.requests) == 1 + len(cases)
    assert set(evaluation.warmup_seconds) == {"engine", "face detector"}
    for request, run in zip(engine.requests[1:], evaluation.runs, strict=True):
        assert request.faces == ()  # detected once, none in a synthetic image
        assert (request.num_outputs, request.seed) == (2, 7)
        width, height = photoremix.imaging.output_size_2k(96, 64)
        assert request.output_size == run.output_size == (width, height)

    # CSV: one row per case and method (variation 0 only), in case order.
    csv_path = tmp_path / "results.csv"
    write_csv(evaluation, csv_path)
    rows = read_csv(csv_path)
    assert [(row["case"], row["method"]) for row in rows] == [
        (str(i), method) for i in range(len(CASES)) for method in ("resize", "match_histograms")
    ]
    for row, (case_number, method) in zip(
        rows,
        [(i, m) for i in range(len(CASES)) for m in ("resize", "match_histograms")],
        strict=True,
    ):
        assert row["content"] == f"in{case_number}.png"
        assert row["tag"] == CASES[case_number][2]
        assert row["variation"] == "0"
        output_size = evaluation.runs[case_number].output_size
        assert (int(row["output_width"]), int(row["output_height"])) == output_size
        assert float(row["seconds"]) > 0
        assert row["faces"] == "0" and row["identity_median"] == "" and row["face_distances"] == ""
        if method == "resize":
            # An upscaled copy: colours and structure unchanged.
            assert float(row["style"]) == pytest.approx(1.0, abs=0.1)
            assert float(row["structure"]) > 0.9
        else:
            assert float(row["style"]) < 0.5

    # Aggregates are the medians of the per-output numbers, overall and per tag.
    summaries = summarize(evaluation)
    assert [(s.tag, s.method) for s in summaries] == [
        (tag, method)
        for tag in (ALL_TAGS, "cool-to-warm", "warm-to-cool")
        for method in ("resize", "match_histograms")
    ]
    for summary in summaries:
        selected = [
            row
            for row in rows
            if row["method"] == summary.method and summary.tag in (ALL_TAGS, row["tag"])
        ]
        assert summary.outputs == len(selected)
        for field in ("style", "texture", "structure"):
            expected = np.median([float(row[field]) for row in selected])
            assert getattr(summary, field) == pytest.approx(expected, rel=1e-5)
        expected_seconds = np.median([float(row["seconds"]) for row in selected])
        assert summary.seconds_per_variation == pytest.approx(expected_seconds, rel=1e-5)
        assert summary.faces == 0 and math.isnan(summary.identity_median)
    table = summary_table(evaluation, summaries)
    assert table.row_count == len(summaries)

    # One contact sheet per tag: rows = cases, columns = input | reference | methods.
    paths = write_contact_sheets(evaluation, tmp_path)
    assert [p.name for p in paths] == ["contact-cool-to-warm.jpg", "contact-warm-to-cool.jpg"]
    sheet = cv2.imread(str(paths[1]), cv2.IMREAD_COLOR)
    assert sheet is not None
    assert sheet.shape == (2 * (CELL_HEIGHT + CAPTION_HEIGHT), 4 * CELL_WIDTH, 3)
    sheet = cv2.cvtColor(sheet, cv2.COLOR_BGR2RGB)
    # Row 0 input cell holds case 0's content (3:2, fills the cell), its caption is text.
    content_cell = sheet[:CELL_HEIGHT, :CELL_WIDTH].reshape(-1, 3).mean(axis=0)
    assert np.abs(content_cell - CASES[0][0]).max() < 15
    caption = sheet[CELL_HEIGHT : CELL_HEIGHT + CAPTION_HEIGHT, :CELL_WIDTH]
    assert caption.max() > 200 and np.median(caption) < 30


def test_all_variations_are_scored_when_asked(cases_file: Path) -> None:
    cases = load_cases(cases_file, limit=1)
    evaluation = run_evaluation(cases, ResizeEngine(), {}, variations=2, all_variations=True)
    (run,) = evaluation.runs
    assert [(r.method, r.variation) for r in run.results] == [("resize", 0), ("resize", 1)]
    # Variation 1 is brighter: its colours are further from the content's.
    assert run.results[0].metrics.style != run.results[1].metrics.style


def test_load_cases_filters_by_tag_then_limits(cases_file: Path) -> None:
    cases = load_cases(cases_file, tags=["warm-to-cool"], limit=1)
    assert cases == [EvalCase(cases_file.parent, "in0.png", "ref0.png", "warm-to-cool")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"content": "a.png"}', "JSON list"),
        ('[{"content": "a.png", "tag": "x"}]', "'reference'"),
        ('[{"content": "a.png", "reference": "b.png", "tag": "x"}]', "not found"),
    ],
)
def test_bad_cases_files_raise_a_readable_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cases.json"
    path.write_text(text)
    with pytest.raises(EvaluationError, match=message):
        load_cases(path)


def test_unknown_tag_lists_the_known_ones(cases_file: Path) -> None:
    with pytest.raises(EvaluationError, match="tags are: cool-to-warm, warm-to-cool"):
        load_cases(cases_file, tags=["portrait"])


def test_engine_errors_name_the_case(cases_file: Path) -> None:
    class FailingEngine(ResizeEngine):
        def remix(self, request: RemixRequest, progress: object = None) -> list[RemixOutput]:
            if self.requests:  # the warm-up call succeeds, the first case fails
                raise EngineError("reference too dark")
            return super().remix(request)

    with pytest.raises(EvaluationError, match=r"resize failed on in0\.png: reference too dark"):
        run_evaluation(load_cases(cases_file), FailingEngine(), {})


def test_contact_sheets_need_thumbnails(cases_file: Path, tmp_path: Path) -> None:
    evaluation = run_evaluation(load_cases(cases_file, limit=1), None, {"mh": match_histograms})
    with pytest.raises(ValueError, match="thumbnail_height"):
        write_contact_sheets(evaluation, tmp_path)


def test_command_runs_peers_and_writes_outputs(cases_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        eval_command,
        [str(cases_file), "--out", str(out), "--methods", "match_histograms", "--limit", "2"],
    )
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "results.csv")
    assert [row["method"] for row in rows] == ["match_histograms"] * 2
    assert (out / "contact-warm-to-cool.jpg").is_file()
    assert "match_histograms" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--methods", "magic"], "unknown method(s) magic"),
        (["--tags", "portrait"], "tags are: cool-to-warm, warm-to-cool"),
        (["--root", "."], "not found under"),
    ],
)
def test_command_errors_are_messages_not_tracebacks(
    cases_file: Path, tmp_path: Path, arguments: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        eval_command, [str(cases_file), "--out", str(tmp_path / "out"), *arguments]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    assert message in result.output


def test_unavailable_peers_are_refused_with_an_install_hint(
    cases_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import photoremix.evaluation.command as command

    monkeypatch.setattr(command, "available_peers", lambda: {})
    monkeypatch.setattr(
        command, "unavailable_peers", lambda: {"cm-mkl": "needs the 'color_matcher' package"}
    )
    result = CliRunner().invoke(eval_command, [str(cases_file), "--methods", "cm-mkl"])
    assert result.exit_code == 2
    assert "cm-mkl (needs the 'color_matcher' package)" in result.output


def test_every_available_peer_moves_colours_towards_the_reference() -> None:
    content = textured(CASES[0][0], 0, (96, 64))
    reference = textured(CASES[0][1], 1, (80, 80))
    peers = available_peers()
    assert "match_histograms" in peers  # scikit-image is a test dependency
    for name, peer in peers.items():
        output = peer(content, reference)
        assert output.dtype == np.uint8 and output.shape == content.shape, name
        assert style_ratio(output, content, reference) < 0.5, name


def test_undecodable_images_raise_a_readable_error(cases_file: Path) -> None:
    (cases_file.parent / "in0.png").write_bytes(b"not a png")
    with pytest.raises(EvaluationError, match=r"cannot use .*in0\.png"):
        run_evaluation(load_cases(cases_file, limit=1), None, {"mh": match_histograms})
