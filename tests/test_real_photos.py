"""The classic engine on the real evaluation photographs (../shared/data/photos).

Skipped, and listed at the end of the run, when $PHOTOREMIX_PHOTOS_DIR is not set.
Thresholds are loose guards against regressions; the quality targets themselves are
measured with benchmarks/eval_cases.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from photoremix.engines import RemixRequest, get_engine
from photoremix.evaluation.metrics import identity_scores, structure_score, style_ratio
from photoremix.imaging import decode_image, output_size_2k
from photoremix.vision.faces import detect_faces


def cases(photos_dir: Path, tag: str) -> list[dict]:
    return [c for c in json.loads((photos_dir / "cases.json").read_text()) if c["tag"] == tag]


@pytest.mark.parametrize(
    ("tag", "index"), [("photo-photo", 0), ("photo-photo", 5), ("portrait-photo", 2)]
)
def test_classic_remix_of_a_real_case(photos_dir: Path, tag: str, index: int):
    case = cases(photos_dir, tag)[index]
    content = decode_image(photos_dir / case["content"])
    reference = decode_image(photos_dir / case["reference"])
    faces = detect_faces(content)
    [out] = get_engine("classic").remix(
        RemixRequest(
            content=content,
            reference=reference,
            output_size=output_size_2k(content.shape[1], content.shape[0]),
            faces=faces,
        )
    )
    assert style_ratio(out.image, content, reference) < 0.6
    assert structure_score(content, out.image) > 0.93
    for score in identity_scores(content, out.image, faces):
        assert score.kept and score.distance < 0.3


def test_every_case_image_decodes(photos_dir: Path):
    paths = {
        c[k]
        for c in json.loads((photos_dir / "cases.json").read_text())
        for k in ("content", "reference")
    }
    for path in sorted(paths):
        image = decode_image(photos_dir / path)
        assert image.ndim == 3 and min(image.shape[:2]) >= 64
