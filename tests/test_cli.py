"""The command line end to end, on public-domain faces (scikit-image, matplotlib)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from photoremix.cli import main
from photoremix.evaluation.metrics import identity_scores, style_ratio
from photoremix.imaging import decode_image, output_size_2k
from photoremix.vision.faces import detect_faces


@pytest.fixture()
def pair(tmp_path: Path, grace_hopper: np.ndarray) -> tuple[Path, Path]:
    content = tmp_path / "hopper.png"
    reference = tmp_path / "coffee.jpg"
    Image.fromarray(grace_hopper).save(content)
    Image.fromarray(data.coffee()).save(reference, quality=92)
    return content, reference


def test_remix_writes_a_2k_output_that_moved_towards_the_reference(pair, tmp_path, grace_hopper):
    content, reference = pair
    out = tmp_path / "out.jpg"
    result = CliRunner().invoke(main, ["remix", str(content), str(reference), "-o", str(out)])
    assert result.exit_code == 0, result.output
    image = decode_image(out)
    width, height = output_size_2k(512, 600)
    assert image.shape == (height, width, 3)
    assert abs(width * height / 2048**2 - 1) <= 0.02
    assert style_ratio(image, grace_hopper, data.coffee()) < 0.5
    faces = detect_faces(grace_hopper)
    [score] = identity_scores(grace_hopper, image, faces)
    assert score.kept and score.distance < 0.25


def test_several_outputs_progress_and_report(pair, tmp_path):
    content, reference = pair
    out, report = tmp_path / "v.png", tmp_path / "report.json"
    result = CliRunner().invoke(
        main,
        ["remix", str(content), str(reference), "-o", str(out), "-n", "2", "--seed", "9",
         "--prompt", "warmer; paint a rainbow", "--report", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v_1.png").is_file() and (tmp_path / "v_2.png").is_file()
    reports = json.loads(report.read_text())
    assert [r["seed"] for r in reports] == [9, 10]
    assert reports[0]["unhandled_instructions"] == ["paint a rainbow"]
    assert "not understood" in result.output and "paint a rainbow" in result.output


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: Image.new("RGB", (80, 80)).save(p, format="GIF"), "GIF"),
        (lambda p: Image.new("RGB", (40, 40)).save(p, format="PNG"), "64"),
    ],
)
def test_bad_input_gives_a_human_error_and_exit_code_2(pair, tmp_path, make_input, message):
    _, reference = pair
    bad = tmp_path / "bad.png"
    make_input(bad)
    out = tmp_path / "never.jpg"
    result = CliRunner().invoke(main, ["remix", str(bad), str(reference), "-o", str(out)])
    assert result.exit_code == 2
    assert "error:" in result.output and message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_installed_entry_point_fails_cleanly(tmp_path):
    missing = tmp_path / "missing.jpg"
    proc = subprocess.run(
        [sys.executable, "-m", "photoremix.cli", "remix", str(missing), str(missing), "-o", "x"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "input image not found" in proc.stderr and "Traceback" not in proc.stderr
