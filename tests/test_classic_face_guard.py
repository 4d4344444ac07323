"""The classic engine's face guard (engines/classic/face_guard.py) and the palette
completion around the guarded faces (look.complete_palette): each face takes one affine
YCbCr map fitted to the look and limited, the rest of the image takes the reference's
colours minus those the faces show.

Synthetic pixels, plus skimage's astronaut and coffee (public domain).
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from photoremix.engines import RemixRequest, get_engine
from photoremix.engines.classic.face_guard import (
    GUARD,
    IDENTITY,
    FaceLimits,
    apply_face_map,
    face_masks,
    face_parameter_maps,
    fit_face_map,
    guard_masks,
    to_ycbcr,
)
from photoremix.engines.classic.look import complete_palette
from photoremix.evaluation.metrics import identity_scores
from photoremix.vision.faces import Face, detect_faces

LOOSE = FaceLimits(gain=(0.5, 2.0), luma_shift=1.0, chroma_scale=(0.2, 3.0), chroma_shift=1.0)


def skin_pixels(count: int = 2000, seed: int = 0) -> np.ndarray:
    """(count, 3) float32 sRGB: a face's spread of skin tones, shadows to highlights."""
    rng = np.random.default_rng(seed)
    shade = rng.uniform(0.35, 0.9, (count, 1))
    tint = np.array([1.0, 0.78, 0.66]) + rng.normal(0, 0.04, (count, 3))
    return np.clip(shade * tint, 0, 1).astype(np.float32)


def test_fit_recovers_an_affine_map_within_the_limits() -> None:
    original = skin_pixels()
    params = np.array([1.05, -0.03, 0.85, 0.02, -0.015], np.float32)
    look = apply_face_map(original, params)
    fitted = fit_face_map(original, look, np.ones(len(original)), LOOSE)
    np.testing.assert_allclose(fitted, params, atol=1e-4)
    # Weights choose the pixels the map is fitted to: zero weights, no change.
    np.testing.assert_array_equal(
        fit_face_map(original, look, np.zeros(len(original)), LOOSE), IDENTITY
    )


def test_limits_clamp_slope_scale_and_the_mean_change() -> None:
    original = skin_pixels(seed=1)
    # The look flattens the face and turns it dark blue: far beyond the limits.
    wild = np.array([0.3, -0.2, 0.4, 0.2, -0.1], np.float32)
    fitted = fit_face_map(original, apply_face_map(original, wild), np.ones(len(original)), GUARD)
    a, _, s, *_ = fitted
    assert a == pytest.approx(GUARD.gain[0])
    assert s == pytest.approx(GUARD.chroma_scale[0])
    before = to_ycbcr(original).mean(axis=0)
    after = to_ycbcr(apply_face_map(original, fitted)).mean(axis=0)
    assert after[0] - before[0] == pytest.approx(-GUARD.luma_shift, abs=1e-5)
    assert np.hypot(*(after[1:] - before[1:])) == pytest.approx(GUARD.chroma_shift, abs=1e-5)
    # ... in the direction the look asked for.
    asked = to_ycbcr(apply_face_map(original, wild)).mean(axis=0)
    direction = (asked - before)[1:]
    assert np.dot(after[1:] - before[1:], direction) > 0.99 * GUARD.chroma_shift * np.hypot(
        *direction
    )
    # Scaled limits (identity protection, "keep the skin tones") allow less.
    tight = fit_face_map(
        original, apply_face_map(original, wild), np.ones(len(original)), GUARD.scaled(0.25)
    )
    assert abs(tight[0] - 1) == pytest.approx(0.25 * (1 - GUARD.gain[0]))
    assert np.abs(tight - IDENTITY).sum() < np.abs(fitted - IDENTITY).sum()


def test_each_face_gets_its_own_map_where_its_mask_is_largest() -> None:
    faces = (
        Face(box=(10, 20, 40, 60), landmarks=np.zeros((5, 2), np.float32)),
        Face(box=(70, 20, 100, 60), landmarks=np.zeros((5, 2), np.float32)),
    )
    masks = face_masks(faces, (80, 120, 3), (120, 80))
    assert masks.shape == (2, 80, 120)
    assert masks[0, 38, 25] > 0.9 and masks[1, 38, 25] < 0.01
    assert masks[1, 38, 85] > 0.9 and masks[0, 38, 85] < 0.01
    params = np.array([[1.1, 0.0, 1.0, 0.0, 0.0], [0.9, 0.1, 1.0, 0.0, 0.0]], np.float32)
    maps = face_parameter_maps(masks, params)
    np.testing.assert_array_equal(maps[38, 25], params[0])
    np.testing.assert_array_equal(maps[38, 85], params[1])
    np.testing.assert_array_equal(maps[0, 60], IDENTITY)  # no mask reaches the corner


def test_complete_palette_leaves_the_rest_what_the_fixed_pixels_do_not_show() -> None:
    rng = np.random.default_rng(2)
    warm = rng.normal([60, 20, 30], 3, (5000, 3))  # skin-like Lab
    blue = rng.normal([50, 5, -40], 3, (5000, 3))
    target = np.concatenate([warm, blue]).astype(np.float32)
    face = rng.normal([65, 15, 25], 3, (800, 3)).astype(np.float32)
    # The faces are 30 % of the image: they take 3000 of the reference's warm samples.
    rest = complete_palette(target, face, 0.3)
    assert len(rest) == 7000
    is_warm = rest[:, 2] > 0
    assert is_warm.sum() == pytest.approx(2000, abs=50)
    assert (~is_warm).sum() == pytest.approx(5000, abs=50)
    # Faces far from every reference colour still take the nearest reference mass.
    far = complete_palette(target, np.full((10, 3), [90, 60, 80], np.float32), 0.5)
    assert (far[:, 2] > 0).sum() < 100
    np.testing.assert_array_equal(complete_palette(target, face, 0.0), target)


def test_guarded_face_keeps_its_detail_and_its_identity(astronaut: np.ndarray) -> None:
    faces = detect_faces(astronaut)[:1]
    assert faces
    engine = get_engine("classic")
    request = RemixRequest(
        content=astronaut,
        reference=data.coffee(),
        output_size=(512, 512),
        faces=faces,
        prompt="no grain",
    )
    [guarded] = engine.remix(request)
    [unguarded] = engine.remix(RemixRequest(**{**request.__dict__, "faces": ()}))
    # Deep inside the face the output is one affine map of the input: the residual of a
    # least-squares fit of output luma on input luma is dither, not changed detail.
    core = face_masks(faces, astronaut.shape, (512, 512))[0] > 0.99
    before = to_ycbcr(astronaut[core] / 255.0)[:, 0]
    after = to_ycbcr(guarded.image[core] / 255.0)[:, 0]
    slope, offset = np.polyfit(before, after, 1)
    assert np.std(after - (slope * before + offset)) < 1.5 / 255
    free = to_ycbcr(unguarded.image[core] / 255.0)[:, 0]
    free_slope, free_offset = np.polyfit(before, free, 1)
    assert np.std(free - (free_slope * before + free_offset)) > 3 * 1.5 / 255
    # dlib still sees the same person, closer than without the guard.
    kept = identity_scores(astronaut, guarded.image, faces)[0]
    drifted = identity_scores(astronaut, unguarded.image, faces)[0]
    assert kept.kept and kept.distance < 0.1
    assert kept.distance < drifted.distance


def test_guard_masks_leave_a_background_inside_the_ellipse_to_the_look(
    astronaut: np.ndarray,
) -> None:
    from photoremix.engines.classic.texture import face_protection_mask

    faces = detect_faces(astronaut)[:1]
    assert faces
    size = (astronaut.shape[1], astronaut.shape[0])
    inner = face_protection_mask(faces, astronaut.shape, size)
    ellipse = face_masks(faces, astronaut.shape, size)[0]
    # The same face on a blue backdrop that reaches into the guard ellipse's feather.
    backdrop = astronaut.copy()
    backdrop[inner < 0.5] = (40, 70, 200)
    guard = guard_masks(faces, astronaut.shape, backdrop)[0]
    assert guard.shape == ellipse.shape
    assert guard[inner > 0.99].min() > 0.99  # the face itself: always guarded
    # Where the ellipse's feather reaches past the face's own mask: the backdrop is left
    # to the look (the guard is no more than the face mask's own fading edge there).
    backdrop_in_ellipse = (ellipse > 0.2) & (inner < 0.1)
    assert backdrop_in_ellipse.sum() > 500
    assert guard[backdrop_in_ellipse].max() < 0.11
    assert guard[backdrop_in_ellipse].mean() < 0.3 * ellipse[backdrop_in_ellipse].mean()
    # A skin-coloured backdrop there stays guarded (forehead, ears, neck).
    skin_backdrop = astronaut.copy()
    skin_backdrop[inner < 0.5] = np.median(astronaut[inner > 0.99], axis=0).astype(np.uint8)
    skin_guard = guard_masks(faces, astronaut.shape, skin_backdrop)[0]
    assert skin_guard[backdrop_in_ellipse].mean() > 0.8 * ellipse[backdrop_in_ellipse].mean()
