"""The classic engine end to end on public-domain faces: sizes, seeds, variations,
directives and identity."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from photoremix.engines import RemixRequest, get_engine
from photoremix.engines.classic.colour import rgb_to_lab
from photoremix.evaluation.metrics import identity_scores, style_ratio
from photoremix.vision.faces import detect_faces


@pytest.fixture(scope="module")
def engine():
    return get_engine("classic")


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """A clearly different palette: warm, brown, grainy-free coffee cup."""
    return data.coffee()


def request(content, reference, **kwargs) -> RemixRequest:
    kwargs.setdefault("output_size", (512, 512))
    return RemixRequest(content=content, reference=reference, **kwargs)


def test_output_has_requested_size_and_report(engine, astronaut, reference):
    [out] = engine.remix(request(astronaut, reference, output_size=(640, 480)))
    assert out.image.shape == (480, 640, 3) and out.image.dtype == np.uint8
    assert out.report.engine == "classic" and out.report.seed == 0 and out.report.variation == 0
    assert out.report.timings["render"] > 0
    assert out.report.applied["faces_guarded"] >= 1


def test_palette_moves_towards_the_reference_and_the_face_survives(engine, astronaut, reference):
    faces = detect_faces(astronaut)
    [out] = engine.remix(request(astronaut, reference, faces=faces))
    assert style_ratio(out.image, astronaut, reference) < 0.5
    [main_face] = [s for s in identity_scores(astronaut, out.image, faces[:1])]
    assert main_face.kept and main_face.distance < 0.3


def test_same_seed_same_pixels_and_seeds_differ(engine, astronaut):
    grainy = np.clip(
        data.chelsea().astype(int) + np.random.default_rng(0).normal(0, 12, data.chelsea().shape),
        0,
        255,
    ).astype(np.uint8)
    a = engine.remix(request(astronaut, grainy, seed=5, num_outputs=2))
    b = engine.remix(request(astronaut, grainy, seed=5, num_outputs=2))
    c = engine.remix(request(astronaut, grainy, seed=6))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
    assert [o.report.seed for o in a] == [5, 6]
    assert not np.array_equal(a[0].image, c[0].image)  # grain and dither follow the seed


def test_variations_differ_visibly_and_say_how(engine, astronaut, reference):
    outputs = engine.remix(request(astronaut, reference, num_outputs=4))
    descriptions = {o.report.variation_description for o in outputs}
    assert len(descriptions) == 4
    for other in outputs[1:]:
        assert np.abs(other.image.astype(int) - outputs[0].image.astype(int)).mean() > 3
    strengths = [o.report.applied["strength"] for o in outputs]
    assert strengths[1] > strengths[0] > strengths[2]


def test_progress_is_reported_per_output(engine, astronaut, reference):
    seen = []
    engine.remix(
        request(astronaut, reference, num_outputs=3), progress=lambda d, t: seen.append((d, t))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def chroma(image: np.ndarray) -> float:
    lab = rgb_to_lab(image.astype(np.float32) / 255)
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


def test_directives_change_the_output(engine, astronaut, reference):
    [plain] = engine.remix(request(astronaut, reference))
    [mono] = engine.remix(request(astronaut, reference, prompt="black and white", faces=()))
    [warm] = engine.remix(request(astronaut, reference, prompt="make it warmer"))
    [keep] = engine.remix(request(astronaut, reference, prompt="keep the original colours"))
    [odd] = engine.remix(request(astronaut, reference, prompt="add a dragon in the sky"))
    assert chroma(mono.image) < 2
    warm_b = rgb_to_lab(warm.image.astype(np.float32) / 255)[..., 2].mean()
    plain_b = rgb_to_lab(plain.image.astype(np.float32) / 255)[..., 2].mean()
    assert warm_b > plain_b + 3
    assert abs(chroma(keep.image) - chroma(astronaut)) < abs(
        chroma(plain.image) - chroma(astronaut)
    )
    assert odd.report.unhandled_instructions == ["add a dragon in the sky"]


def test_style_strength_zero_is_nearly_the_input(engine, astronaut, reference):
    [out] = engine.remix(request(astronaut, reference, style_strength=0.0, prompt="no grain"))
    assert np.abs(out.image.astype(int) - astronaut.astype(int)).mean() < 2


def test_keep_the_original_background_restyles_only_the_person(engine, grace_hopper, reference):
    faces = detect_faces(grace_hopper)
    size = (512, 600)
    [plain] = engine.remix(request(grace_hopper, reference, faces=faces, output_size=size))
    [kept] = engine.remix(
        request(
            grace_hopper,
            reference,
            faces=faces,
            output_size=size,
            prompt="keep the original background",
        )
    )
    assert "background kept" in kept.report.applied["keep_background"]
    corner = (slice(0, 60), slice(0, 60))  # background, top left
    uniform = (slice(420, 480), slice(220, 300))  # her uniform, below the face

    def change(out, region):
        return np.abs(out.image[region].astype(int) - grace_hopper[region].astype(int)).mean()

    assert change(kept, corner) < 0.3 * change(plain, corner)
    assert change(kept, uniform) > 0.5 * change(plain, uniform)


def test_keep_skin_tones_tightens_the_face_guard(engine, astronaut, reference):
    faces = detect_faces(astronaut)[:1]
    [plain] = engine.remix(request(astronaut, reference, faces=faces, prompt="no grain"))
    [kept] = engine.remix(
        request(astronaut, reference, faces=faces, prompt="keep the skin tones, no grain")
    )
    left, top, right, bottom = faces[0].box  # 512x512 in, 512x512 out: same coordinates
    face = (slice(top, bottom), slice(left, right))

    def change(out):
        return np.abs(out.image[face].astype(int) - astronaut[face].astype(int)).mean()

    assert change(kept) < 0.8 * change(plain)


def test_a_flat_colour_reference_works(engine, astronaut):
    flat = np.full((200, 300, 3), (40, 90, 160), np.uint8)
    [out] = engine.remix(request(astronaut, flat))
    assert out.image.shape == (512, 512, 3)
    assert out.report.applied["grain_std"] == 0.0
