"""Building blocks of the classic engine: colour model, LUT, tone, grain, vignette, render."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from photoremix.engines.classic import colour, grain, tone, vignette
from photoremix.engines.classic.render import (
    GRAIN_TEMPLATE_SIZE,
    RenderPlan,
    identity_face_maps,
    render,
)


def smooth_image(seed: int = 0, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A smooth random colour field, (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (6, 8, 3)).astype(np.float32)
    return (
        cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    )


def identity_plan(shape: tuple[int, int], lut: colour.Lut | None = None) -> RenderPlan:
    lut = lut or colour.identity_lut()
    return RenderPlan(
        shaper=lut.shaper, lut=lut.values,
        coef_a=np.ones((8, 8), np.float32), coef_b=np.zeros((8, 8), np.float32),
        base_curve=tone.identity_tone().base_curve, detail_gain=1.0, face_detail_gain=1.0,
        face_mask=np.zeros((1, 1), np.uint8), keep_mask=np.full((1, 1), 255, np.uint8),
        face_maps=identity_face_maps(), vignette=0.0,
        grain=np.zeros((GRAIN_TEMPLATE_SIZE, GRAIN_TEMPLATE_SIZE, 3), np.float32),
        grain_curve=np.zeros(16, np.float32), face_grain=0.3, grain_chroma=0.0, grain_offset=(0, 0),
        knee=0.999, dither_seed=1, dark_chroma_calm=0.0,
    )  # fmt: skip


def test_identity_render_changes_nothing_but_dither():
    image = smooth_image()
    out = render(image, identity_plan(image.shape[:2]))
    diff = np.abs(out.astype(int) - image.astype(int))
    assert diff.max() <= 1  # TPDF dither moves a value by at most one code
    assert 0 < diff.mean() < 0.6


def test_mkl_matches_mean_and_covariance():
    rng = np.random.default_rng(0)
    source = rng.normal([50, 0, 0], [10, 5, 3], (20000, 3))
    target = rng.multivariate_normal([60, 10, -5], [[40, 5, 0], [5, 30, 4], [0, 4, 20]], 20000)
    T, offset = colour.mkl_transform(source, target)
    mapped = source @ T + offset
    np.testing.assert_allclose(mapped.mean(0), target.mean(0), atol=0.3)
    np.testing.assert_allclose(np.cov(mapped, rowvar=False), np.cov(target, rowvar=False), atol=1.5)


def test_idt_matches_a_non_gaussian_distribution_better_than_mkl():
    rng = np.random.default_rng(1)
    source = rng.normal([50, 0, 0], [8, 4, 4], (20000, 3))
    # bimodal target: two colour clusters
    target = np.concatenate(
        [rng.normal([30, 30, 10], 3, (10000, 3)), rng.normal([70, -20, 40], 3, (10000, 3))]
    )
    mkl_only = colour.fit_colour_model(source, target, iterations=0)
    full = colour.fit_colour_model(source, target, iterations=10)

    def marginal_error(points: np.ndarray) -> float:
        q = np.linspace(0.02, 0.98, 25)
        return float(
            np.mean(
                [
                    np.abs(np.quantile(points[:, k], q) - np.quantile(target[:, k], q)).mean()
                    for k in range(3)
                ]
            )
        )

    assert marginal_error(full.apply(source)) < 0.5 * marginal_error(mkl_only.apply(source))


def test_baked_lut_reproduces_a_smooth_map():
    image = smooth_image(3)
    rgb = image.reshape(-1, 3).astype(np.float32) / 255
    # A known global map in Lab: darker, warmer, more saturated.
    model = colour.ColourModel(
        T=np.diag([0.8, 1.3, 1.3]), offset=np.array([0.0, 5.0, 12.0]), steps=[], relaxation=1.0
    )
    expected = np.clip(
        colour.lab_to_rgb(model.apply(colour.rgb_to_lab(rgb)).astype(np.float32)), 0, 1
    )
    lut = colour.bake_lut(rgb, expected, colour.fit_shaper(rgb))
    out = render(image, identity_plan(image.shape[:2], lut)).reshape(-1, 3).astype(np.float32) / 255
    assert np.abs(out - expected).mean() < 0.02


def test_lut_on_greyscale_content_stays_smooth_off_the_grey_axis():
    # Greyscale content has no samples off the grey axis; the LUT must not explode there.
    grey = np.repeat(smooth_image(4)[..., :1], 3, axis=2)
    rgb = grey.reshape(-1, 3).astype(np.float32) / 255
    target = colour.rgb_to_lab(smooth_image(5).reshape(-1, 3).astype(np.float32) / 255)
    model = colour.fit_colour_model(colour.rgb_to_lab(rgb), target)
    mapped = colour.lab_to_rgb(model.fitted.astype(np.float32))
    lut = colour.bake_lut(rgb, mapped, colour.fit_shaper(rgb))
    jitter = np.clip(grey.astype(int) + np.array([3, -3, 2]), 0, 255).astype(np.uint8)
    a = render(grey, identity_plan(grey.shape[:2], lut)).astype(int)
    b = render(jitter, identity_plan(grey.shape[:2], lut)).astype(int)
    # A near-grey pixel maps near its grey neighbour. The map along the grey axis is steep
    # (it colourises), so a 3-code step may move the output a few times that; a LUT
    # evaluated at off-axis nodes moved it by up to ~150 codes.
    assert np.abs(a - b).mean() < 10


def test_guided_base_layer_keeps_edges_and_smooths_texture():
    y = np.zeros((64, 64), np.float32)
    y[:, 32:] = 0.8
    rng = np.random.default_rng(0)
    noisy = y + rng.normal(0, 0.01, y.shape).astype(np.float32)
    base = tone.base_layer(noisy)
    assert (
        abs(base[:, 28].mean() - 0.0) < 0.05 and abs(base[:, 36].mean() - 0.8) < 0.05
    )  # edge kept
    assert (noisy - base)[:, 5:25].std() > 0.5 * 0.01  # fine texture goes to the detail layer


def test_tone_fit_of_an_image_onto_itself_is_identity():
    image = smooth_image(6).astype(np.float32) / 255
    fit = tone.fit_tone(image, image)
    assert abs(fit.detail_gain - 1) < 1e-3
    np.testing.assert_allclose(tone.apply_tone(image, fit), image, atol=0.02)


def test_tone_fit_transfers_brightness_and_local_contrast():
    content = smooth_image(7).astype(np.float32) / 255 * 0.5
    rng = np.random.default_rng(2)
    textured = np.clip(
        smooth_image(8).astype(np.float32) / 255 * 0.5 + 0.4 + rng.normal(0, 0.05, content.shape),
        0,
        1,
    )
    fit = tone.fit_tone(content, textured.astype(np.float32))
    assert tone.apply_tone(content, fit).mean() > content.mean() + 0.2
    assert fit.detail_gain > 1.2
    assert fit.scaled(0.0).detail_gain == pytest.approx(1.0)


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_grain_is_measured_from_flat_regions(sigma: float):
    rng = np.random.default_rng(3)
    clean = cv2.resize(
        rng.uniform(60, 200, (4, 4, 3)).astype(np.float32),
        (512, 512),
        interpolation=cv2.INTER_CUBIC,
    )
    noise = rng.normal(0, 4, (512, 512, 1)).astype(np.float32)
    if sigma:
        noise = cv2.GaussianBlur(noise, (0, 0), sigma)[..., None]
        noise *= 4 / noise.std()
    noisy = np.clip(clean + noise, 0, 255).astype(np.uint8)
    model = grain.estimate_grain(noisy)
    assert 4 / 255 * 0.7 < model.amount < 4 / 255 * 1.3
    assert (model.sigma > 0.4) == bool(sigma)
    assert grain.estimate_grain(clean.astype(np.uint8)).amount == 0.0
    assert grain.estimate_grain(np.full((300, 400, 3), 90, np.uint8)).amount == 0.0  # flat


def test_grain_template_is_unit_variance_and_seeded():
    model = grain.GrainModel(np.full(16, 0.02, np.float32), 1.0, 0.2, 1000)
    a = grain.grain_template(model, 2000, 128, seed=1)
    assert a.shape == (128, 128, 3) and abs(a.std() - 1) < 0.05
    np.testing.assert_array_equal(a, grain.grain_template(model, 2000, 128, seed=1))
    assert not np.array_equal(a, grain.grain_template(model, 2000, 128, seed=2))


def test_vignette_estimate_finds_a_synthetic_falloff():
    h, w = 200, 300
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / (
        ((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2
    )
    flat = np.full((h, w, 3), 0.6, np.float32)
    assert vignette.estimate_vignette(flat) < 0.02
    assert vignette.estimate_vignette(flat * (1 - 0.3 * r2)[..., None]) == pytest.approx(
        0.3, abs=0.05
    )
    assert vignette.vignette_to_apply(0.1, 0.3) == 0.0


def test_render_highlight_rolloff_and_face_guard():
    image = np.full((64, 64, 3), 200, np.uint8)
    image[..., 0] = 220  # a warm, skin-like tone
    lut = colour.identity_lut()
    # a LUT that rotates colours strongly: swap red and blue
    swapped = lut.with_values(lut.nodes[..., ::-1].copy())
    plan = identity_plan(image.shape[:2], swapped)
    unguarded = render(image, plan)
    face = np.zeros((64, 64), np.uint8)
    face[16:48, 16:48] = 255
    guarded = render(image, dataclasses.replace(plan, face_mask=face))
    inside = (slice(20, 44), slice(20, 44))
    assert (
        np.abs(guarded[inside].astype(int) - image[inside]).max()
        < np.abs(unguarded[inside].astype(int) - image[inside]).max()
    )
    np.testing.assert_array_equal(guarded[:8, :8], unguarded[:8, :8])  # outside the face: untouched
    bright = render(
        np.full((8, 8, 3), 255, np.uint8),
        dataclasses.replace(plan, lut=lut.values * 1.05, knee=0.9),
    )
    assert bright.max() < 255  # soft knee: values above 1 roll off instead of clipping
