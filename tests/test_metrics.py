"""Behaviour of the evaluation metrics on synthetic images and scikit-image's astronaut."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from photoremix.evaluation.metrics import (
    TEXTURE_STATISTICS,
    FaceIdentity,
    OutputMetrics,
    evaluate_output,
    identity_scores,
    sliced_wasserstein_lab,
    structure_score,
    style_ratio,
    texture_ratio,
    texture_statistics,
)
from photoremix.vision.faces import SAME_PERSON_DISTANCE, Face, detect_faces


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return data.coffee()


@pytest.fixture(scope="module")
def astronaut_face(astronaut: np.ndarray) -> Face:
    faces = detect_faces(astronaut)
    assert faces, "dlib should find the astronaut's face"
    return faces[0]  # largest first: the astronaut herself


def smooth_image(seed: int = 0, size: tuple[int, int] = (256, 192)) -> np.ndarray:
    """(h, w, 3) uint8: broad colour gradients, nearly no fine texture."""
    width, height = size
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0.2, 0.8, size=(2, 3)).astype(np.float32)
    image = 255 * (x * colours[0] + y * colours[1]) / 1.6 + 40
    return np.clip(image, 0, 255).astype(np.uint8)


def test_style_ratio_is_zero_for_the_reference_and_one_for_the_content(
    astronaut: np.ndarray, coffee: np.ndarray
) -> None:
    assert style_ratio(coffee, astronaut, coffee) == pytest.approx(0.0, abs=1e-9)
    assert style_ratio(astronaut, astronaut, coffee) == pytest.approx(1.0, abs=1e-9)


def test_style_ratio_falls_as_the_output_moves_towards_the_reference(
    astronaut: np.ndarray, coffee: np.ndarray
) -> None:
    coffee_sized = cv2.resize(coffee, astronaut.shape[1::-1])
    blends = [cv2.addWeighted(astronaut, 1 - w, coffee_sized, w, 0) for w in (0.3, 0.7)]
    ratios = [style_ratio(blend, astronaut, coffee) for blend in blends]
    assert 1.0 > ratios[0] > ratios[1] > 0.0


def test_style_ratio_is_undefined_when_content_already_matches_reference(
    astronaut: np.ndarray,
) -> None:
    assert np.isnan(style_ratio(astronaut, astronaut, astronaut))


def test_sliced_distance_is_symmetric_and_positive_for_different_images(
    astronaut: np.ndarray, coffee: np.ndarray
) -> None:
    forward = sliced_wasserstein_lab(astronaut, coffee)
    assert forward > 1.0  # Lab units: clearly different palettes
    assert sliced_wasserstein_lab(coffee, astronaut) == pytest.approx(forward, rel=1e-9)


def test_sliced_distance_ignores_pixel_positions(astronaut: np.ndarray) -> None:
    pixels = astronaut.reshape(-1, 3)
    shuffled = np.random.default_rng(1).permutation(pixels).reshape(astronaut.shape)
    assert sliced_wasserstein_lab(astronaut, shuffled) < 1e-6


def test_sliced_distance_grows_with_a_colour_shift(astronaut: np.ndarray) -> None:
    shifts = [np.clip(astronaut.astype(np.int16) + s, 0, 255).astype(np.uint8) for s in (10, 30)]
    small, large = (sliced_wasserstein_lab(astronaut, shifted) for shifted in shifts)
    assert 0.5 < small < large


def test_texture_statistics_are_40_finite_numbers(astronaut: np.ndarray) -> None:
    statistics = texture_statistics(astronaut)
    assert statistics.shape == (TEXTURE_STATISTICS,) == (40,)
    assert statistics.dtype == np.float64
    assert np.all(np.isfinite(statistics))


def test_noise_raises_the_fine_scale_texture_statistics() -> None:
    smooth = smooth_image()
    noise = np.random.default_rng(2).normal(0, 20, size=smooth.shape)
    noisy = np.clip(smooth + noise, 0, 255).astype(np.uint8)
    smooth_stats = texture_statistics(smooth).reshape(4, 5, 2)  # level, response, stat
    noisy_stats = texture_statistics(noisy).reshape(4, 5, 2)
    # Mean log response magnitude at the finest level, all five responses.
    assert np.all(noisy_stats[0, :, 0] > smooth_stats[0, :, 0] + 0.5)


def test_texture_ratio_is_zero_for_the_reference_and_one_for_the_content(
    astronaut: np.ndarray, coffee: np.ndarray
) -> None:
    assert texture_ratio(coffee, astronaut, coffee) == pytest.approx(0.0, abs=1e-9)
    assert texture_ratio(astronaut, astronaut, coffee) == pytest.approx(1.0, abs=1e-9)


def test_structure_of_an_image_with_itself_is_one(astronaut: np.ndarray) -> None:
    assert structure_score(astronaut, astronaut) == pytest.approx(1.0, abs=1e-9)


def test_structure_ignores_gain_and_offset(astronaut: np.ndarray) -> None:
    brighter = np.clip(astronaut * 0.8 + 30, 0, 255).astype(np.uint8)
    assert structure_score(astronaut, brighter) > 0.99


def test_structure_compares_at_the_content_size(astronaut: np.ndarray) -> None:
    enlarged = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    assert structure_score(astronaut, enlarged) > 0.97


def test_structure_drops_for_blurred_or_shifted_copies(astronaut: np.ndarray) -> None:
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 2.0)
    shifted = np.roll(astronaut, 3, axis=1)
    assert structure_score(astronaut, blurred) < 0.95
    assert structure_score(astronaut, shifted) < 0.8


def test_metrics_reject_non_uint8_rgb_images(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        structure_score(astronaut.astype(np.float32), astronaut)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        sliced_wasserstein_lab(astronaut[..., 0], astronaut)


def test_identity_of_an_unchanged_face_is_kept_at_distance_zero(
    astronaut: np.ndarray, astronaut_face: Face
) -> None:
    (score,) = identity_scores(astronaut, astronaut, (astronaut_face,))
    assert score.kept
    assert score.distance < 0.05


def test_identity_follows_the_face_into_a_larger_output(
    astronaut: np.ndarray, astronaut_face: Face
) -> None:
    enlarged = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    (score,) = identity_scores(astronaut, enlarged, (astronaut_face,))
    assert score.kept
    assert score.distance < 0.3


def test_a_blanked_face_is_not_kept(astronaut: np.ndarray, astronaut_face: Face) -> None:
    left, top, right, bottom = astronaut_face.box
    margin = astronaut_face.width // 4
    blanked = astronaut.copy()
    blanked[top - margin : bottom + margin, left - margin : right + margin] = 128
    (score,) = identity_scores(astronaut, blanked, (astronaut_face,))
    assert not score.kept
    assert score.distance > SAME_PERSON_DISTANCE


def test_identity_detects_content_faces_when_none_are_given(astronaut: np.ndarray) -> None:
    scores = identity_scores(astronaut, astronaut)
    assert len(scores) == len(detect_faces(astronaut)) >= 1
    assert identity_scores(smooth_image(), smooth_image()) == []


def test_evaluate_output_combines_the_metrics(
    astronaut: np.ndarray, coffee: np.ndarray, astronaut_face: Face
) -> None:
    output = cv2.addWeighted(astronaut, 0.5, cv2.resize(coffee, astronaut.shape[1::-1]), 0.5, 0)
    metrics = evaluate_output(astronaut, coffee, output, (astronaut_face,))
    assert isinstance(metrics, OutputMetrics)
    assert metrics.style == style_ratio(output, astronaut, coffee)
    assert metrics.texture == texture_ratio(output, astronaut, coffee)
    assert metrics.structure == structure_score(astronaut, output)
    assert metrics.faces == identity_scores(astronaut, output, (astronaut_face,))
    assert metrics.faces_kept == sum(face.kept for face in metrics.faces)
    assert metrics.identity_worst == max(face.distance for face in metrics.faces)


def test_face_summaries_without_faces_are_undefined() -> None:
    metrics = OutputMetrics(style=0.5, texture=0.5, structure=0.9)
    assert np.isnan(metrics.identity_median) and np.isnan(metrics.identity_worst)
    two = OutputMetrics(0.5, 0.5, 0.9, [FaceIdentity(0.2, True), FaceIdentity(0.7, False)])
    assert two.identity_median == pytest.approx(0.45)
    assert two.identity_worst == 0.7
    assert two.faces_kept == 1
