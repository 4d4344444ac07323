"""The classic engine's locally affine lightness (lightness.py) and the renderer's use of it:
the maps follow a target where it is locally affine, never reverse contrast, keep the
target's distribution, and the rendered L* is what the maps say."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from photoremix.engines import RemixRequest, get_engine
from photoremix.engines.classic import colour, lightness, vignette
from photoremix.engines.classic import engine as engine_module
from photoremix.engines.classic.face_guard import to_ycbcr
from photoremix.engines.classic.render import (
    RenderPlan,
    render,
)
from photoremix.evaluation.metrics import structure_score
from test_classic_operators import identity_plan


def lightness_field(seed: int, shape: tuple[int, int] = (120, 160)) -> np.ndarray:
    """A smooth random L* field in about 10..90 with fine texture, (h, w) float32."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(
        rng.uniform(10, 90, (6, 8)).astype(np.float32), shape[::-1], interpolation=cv2.INTER_CUBIC
    )
    return np.clip(coarse + rng.normal(0, 2, shape).astype(np.float32), 0, 100)


def colour_image(seed: int, shape: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A smooth random colour field with texture, (h, w, 3) uint8."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(
        rng.uniform(30, 225, (5, 6, 3)).astype(np.float32),
        shape[::-1],
        interpolation=cv2.INTER_CUBIC,
    )
    return np.clip(coarse + rng.normal(0, 6, coarse.shape), 0, 255).astype(np.uint8)


def plan_for(shape: tuple[int, int], lut: colour.Lut | None = None, **changes) -> RenderPlan:
    """A plan that changes nothing but what ``changes`` set (grain off, tiny dither)."""
    return dataclasses.replace(identity_plan(shape, lut), **changes)


def lstar(image: np.ndarray) -> np.ndarray:
    return colour.rgb_to_lab(image.astype(np.float32) / 255)[..., 0]


def test_maps_reproduce_a_locally_affine_target():
    content = lightness_field(0)
    yy, xx = np.mgrid[0 : content.shape[0], 0 : content.shape[1]].astype(np.float32)
    slope = 0.6 + 0.8 * xx / xx.max()  # contrast rises from left to right
    offset = 20 * yy / yy.max()
    target = slope * content + offset
    maps = lightness.fit_lightness(content, target)
    fitted = maps.slope * content + maps.offset
    inner = (slice(10, -10), slice(10, -10))
    assert np.abs(fitted - target)[inner].mean() < 1.0  # L* units
    # a plain global curve is not locally affine everywhere, but close to it at this scale
    curved = 100 * (content / 100) ** 0.6
    curved_fit = lightness.fit_lightness(content, curved)
    assert np.abs(curved_fit.slope * content + curved_fit.offset - curved)[inner].mean() < 1.5


def test_maps_never_reverse_or_flatten_contrast():
    content = lightness_field(1)
    maps = lightness.fit_lightness(content, 100 - content)  # an inverting look
    assert maps.slope.min() >= lightness.MIN_SLOPE - 1e-6
    assert maps.slope.max() <= lightness.MAX_SLOPE + 1e-6
    # where the content is flat, the slope is the prior (its own contrast), not noise
    flat = np.full((60, 80), 40, np.float32)
    flat_maps = lightness.fit_lightness(flat, flat + 7)
    np.testing.assert_allclose(flat_maps.slope, lightness.PRIOR_SLOPE, atol=1e-3)
    np.testing.assert_allclose(flat_maps.slope * flat + flat_maps.offset, 47, atol=0.05)


def test_maps_keep_the_distribution_asked_for():
    content = lightness_field(2)
    # a steep S-curve: the regression alone flattens the spread within each window
    target = 50 + 50 * np.tanh((content - 50) / 12)
    fitted_plain = lightness.fit_lightness(content, target, target)
    levels = np.linspace(0.05, 0.95, 19)

    def quantile_error(maps: lightness.LightnessMaps) -> float:
        fitted = maps.slope * content + maps.offset
        return float(np.abs(np.quantile(fitted, levels) - np.quantile(target, levels)).mean())

    original = lightness.HISTOGRAM_ITERATIONS
    try:
        lightness.HISTOGRAM_ITERATIONS = 0
        without_step = lightness.fit_lightness(content, target, target)
    finally:
        lightness.HISTOGRAM_ITERATIONS = original
    assert quantile_error(fitted_plain) < quantile_error(without_step)
    # and a different distribution can be asked for: darker overall
    darker = lightness.fit_lightness(content, target, target - 10)
    assert (darker.slope * content + darker.offset).mean() < target.mean() - 5


def test_render_sets_lstar_from_the_maps_and_keeps_the_hue():
    image = colour_image(3)
    h, w = image.shape[:2]
    maps = lightness.LightnessMaps(
        slope=np.full((8, 8), 0.5, np.float32),
        offset=np.full((8, 8), 30.0, np.float32),
        local_mean=np.full((8, 8), 50.0, np.float32),
    )
    out = render(image, plan_for((h, w), lightness=maps))
    before, after = colour.rgb_to_lab(image / 255.0), colour.rgb_to_lab(out / 255.0)
    expected = 0.5 * before[..., 0] + 30
    assert np.abs(after[..., 0] - expected).mean() < 0.6
    # chromaticity kept: the hue angle of saturated pixels barely moves
    chroma = np.hypot(before[..., 1], before[..., 2])
    hue_before = np.arctan2(before[..., 2], before[..., 1])
    hue_after = np.arctan2(after[..., 2], after[..., 1])
    turn = np.angle(np.exp(1j * (hue_after - hue_before)))[chroma > 15]
    assert np.abs(turn).mean() < np.deg2rad(4)


def test_render_enlarges_after_the_look():
    image = colour_image(4, (60, 80))
    out = render(image, plan_for(image.shape[:2]), output_size=(240, 180))
    assert out.shape == (180, 240, 3)
    enlarged = cv2.resize(image, (240, 180), interpolation=cv2.INTER_LANCZOS4)
    assert np.abs(out.astype(int) - enlarged).mean() < 0.7  # only dither differs


def test_face_guard_applies_the_faces_affine_map_whatever_the_lut():
    image = colour_image(5)
    lut = colour.identity_lut()
    swapped = lut.with_values(lut.nodes[..., ::-1].copy())  # red <-> blue: hues turn a lot
    face = np.zeros(image.shape[:2], np.uint8)
    face[:, 64:] = 255  # the right half is "face"
    unguarded = render(image, plan_for(image.shape[:2], swapped))
    assert np.abs(unguarded[:, 64:].astype(int) - image[:, 64:]).mean() > 10

    # The identity map: the face keeps its pixels (only the dither moves them).
    kept = render(image, plan_for(image.shape[:2], swapped, face_mask=face))
    assert np.abs(kept[:, 64:].astype(int) - image[:, 64:]).max() <= 1
    np.testing.assert_array_equal(kept[:, :60], unguarded[:, :60])  # outside: the look

    # A given map: Y' = 0.9 Y + 0.05, CbCr' = 0.8 CbCr + (0.03, -0.02), wherever the
    # maps' grid puts it.
    params = np.array([0.9, 0.05, 0.8, 0.03, -0.02], np.float32)
    maps = np.broadcast_to(params, (5, 7, 5)).copy()
    mapped = render(image, plan_for(image.shape[:2], swapped, face_mask=face, face_maps=maps))
    before = to_ycbcr(image[:, 64:] / 255.0)
    expected = np.stack(
        [0.9 * before[..., 0] + 0.05, 0.8 * before[..., 1] + 0.03, 0.8 * before[..., 2] - 0.02],
        axis=-1,
    )
    np.testing.assert_allclose(to_ycbcr(mapped[:, 64:] / 255.0), expected, atol=2.5 / 255)


def test_vignette_falloff_matches_the_renderer():
    grey = np.full((90, 120, 3), 180, np.uint8)
    out = render(grey, plan_for(grey.shape[:2], vignette=0.3)).astype(np.float64) / 255
    falloff = vignette.falloff(grey.shape[:2], 0.3)
    assert falloff[45, 60] == pytest.approx(1.0, abs=0.01)
    assert falloff[0, 0] == pytest.approx(0.7, abs=1e-6)
    np.testing.assert_allclose(out[..., 0], 180 / 255 * falloff, atol=1.5 / 255)


def test_lightness_step_keeps_the_content_structure(astronaut, monkeypatch):
    from skimage import data

    engine = get_engine("classic")
    request = RemixRequest(
        content=astronaut, reference=data.coffee(), output_size=(512, 512), faces=()
    )
    [with_maps] = engine.remix(request)
    monkeypatch.setattr(engine_module, "_with_lightness", lambda plan, *inputs: plan)
    [without] = engine.remix(request)
    assert structure_score(astronaut, with_maps.image) > structure_score(astronaut, without.image)
    # and the look is still transferred: the output is far from the content
    assert np.abs(lstar(with_maps.image) - lstar(astronaut)).mean() > 3
