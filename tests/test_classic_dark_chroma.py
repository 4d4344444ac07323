"""Dark, near-neutral chroma is averaged before the colour LUT (``colour.calm_dark_chroma``
and render step 2): the LUT's large gain on such a cluster must spread its large-scale
colour, not its noise."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from photoremix.engines.classic import colour
from photoremix.engines.classic.render import render
from test_classic_operators import identity_plan

NAVY = np.array([0.09, 0.08, 0.15], np.float32)  # a dark suit, sRGB in [0, 1]
ORANGE = np.array([0.9, 0.5, 0.2], np.float32)  # bright and saturated


def two_halves_with_chroma_noise(seed: int = 0) -> np.ndarray:
    """(192, 256, 3) float32: navy left half, orange right half, both with 2x2-block chroma
    noise of about 0.015 (JPEG-like) and no luma noise."""
    rng = np.random.default_rng(seed)
    image = np.empty((192, 256, 3), np.float32)
    image[:, :128], image[:, 128:] = NAVY, ORANGE
    blocks = rng.normal(0.0, 0.015, (96, 128, 2)).astype(np.float32)
    noise = cv2.resize(blocks, (256, 192), interpolation=cv2.INTER_NEAREST)
    return image + noise @ colour.RGB_PER_CHROMA


def chroma(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float32) @ colour.CHROMA_ROWS.T


def luma(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def test_weight_selects_dark_near_neutral_colours():
    weights = colour.dark_neutral_weight(np.stack([NAVY, ORANGE, NAVY * 0.3 + 0.7]))
    np.testing.assert_allclose(weights, [1.0, 0.0, 0.0])


def test_calm_averages_dark_chroma_noise_and_keeps_luma():
    image = two_halves_with_chroma_noise()
    calmed = colour.calm_dark_chroma(image)

    dark = np.s_[16:-16, 16:112]  # away from the border with the orange half
    before, after = chroma(image[dark]).std(axis=(0, 1)), chroma(calmed[dark]).std(axis=(0, 1))
    assert np.all(after < before / 3), (before, after)
    # the mean chroma (the suit's colour) stays
    np.testing.assert_allclose(chroma(calmed[dark]).mean((0, 1)), chroma(NAVY), atol=0.004)
    np.testing.assert_allclose(luma(calmed), luma(image), atol=1e-5)
    # bright, saturated pixels are left as they are
    np.testing.assert_allclose(calmed[:, 144:], image[:, 144:], atol=1e-6)


def test_render_calms_dark_chroma_only_when_asked():
    image = np.clip(two_halves_with_chroma_noise(1) * 255 + 0.5, 0, 255).astype(np.uint8)
    plan = identity_plan(image.shape[:2])
    calmed = render(image, dataclasses.replace(plan, dark_chroma_calm=1.0))
    untouched = render(image, plan)

    dark = np.s_[16:-16, 16:112]
    noise_in = chroma(image[dark] / 255.0).std(axis=(0, 1))
    assert np.all(chroma(calmed[dark] / 255.0).std(axis=(0, 1)) < noise_in / 2)
    assert np.all(chroma(untouched[dark] / 255.0).std(axis=(0, 1)) > noise_in * 0.8)
    # the orange half is the identity render either way (dither: one code at most)
    assert np.abs(calmed[:, 144:].astype(int) - image[:, 144:].astype(int)).max() <= 1
