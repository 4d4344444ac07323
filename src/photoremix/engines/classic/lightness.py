"""Locally affine lightness: the look's tonality without new or reversed local structure.

A global colour map is a function of colour, not of place: where the content's local
texture spans a strongly curved part of the map, or where the map makes lightness depend on
chroma, the output's local lightness stops being proportional to the content's (SSIM's
structure term drops). A smooth, place-dependent *affine* map of lightness does not change
the structure term at all.

So the renderer sets each pixel's CIE L* to ``a * L*(content) + b``, where ``a`` and ``b``
are smooth low-resolution maps: a guided-filter regression (He, Sun and Tang 2013) of the
L* the look produces onto the content's L*. Over regions larger than the filter radius the
output keeps the look's tonality; within them, local structure is the content's. The slope
is kept positive, so no edge is reversed. One histogram-matching step on the result puts
back the look's lightness distribution, which the regression flattens a little.

All maps are float32 of shape (h, w) (the coefficient maps' resolution); L* in 0..100.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Regression window radius as a fraction of the maps' long side.
RADIUS_FRACTION = 0.011
# Regulariser (L* units squared) and the slope it pulls towards: a window flatter than
# about sqrt(EPSILON) (a sky, a clipped highlight) keeps the content's own contrast there
# instead of taking a slope from its quantisation noise.
EPSILON = 0.3
PRIOR_SLOPE = 1.0
# Local slope limits: a window the look would flatten or invert keeps MIN_SLOPE contrast;
# one it would stretch more than MAX_SLOPE-fold turns the content's JPEG noise into
# visible blotches (skies), so it stops there.
MIN_SLOPE = 0.3
MAX_SLOPE = 2.0
HISTOGRAM_ITERATIONS = 1
QUANTILES = 256


@dataclass
class LightnessMaps:
    """Output L* = slope * content L* + offset, per pixel of the (h, w) maps.

    local_mean: the content's L* averaged over the regression window, so a renderer that
    changes the slope somewhere (inside faces) can keep the local mean lightness.
    """

    slope: np.ndarray
    offset: np.ndarray
    local_mean: np.ndarray


def _box(values: np.ndarray, radius: int) -> np.ndarray:
    return cv2.boxFilter(values, -1, (2 * radius + 1, 2 * radius + 1))


def _regression(
    x: np.ndarray, t: np.ndarray, radius: int, mean_x: np.ndarray, variance_x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    covariance = _box(x * t, radius) - mean_x * _box(t, radius)
    slope = (covariance + EPSILON * PRIOR_SLOPE) / (variance_x + EPSILON)
    slope = np.clip(slope, MIN_SLOPE, MAX_SLOPE)
    offset = _box(t, radius) - slope * mean_x
    return _box(slope, radius), _box(offset, radius)


def _quantiles(values: np.ndarray) -> np.ndarray:
    # Every third value is plenty for 256 quantiles of a few hundred thousand pixels.
    ordered = np.sort(values.ravel()[::3])
    index = ((np.arange(QUANTILES) + 0.5) / QUANTILES * (ordered.size - 1)).astype(int)
    return ordered[index]


def fit_lightness(
    content_lightness: np.ndarray,
    target_lightness: np.ndarray,
    distribution: np.ndarray | None = None,
) -> LightnessMaps:
    """Maps with ``slope * content + offset`` close to ``target_lightness`` locally.

    content_lightness, target_lightness: (h, w) L*. distribution: (h, w) L* whose
    histogram the result should have (default: the target's); the engine passes the look
    without its vignette, so the vignette darkens the corners without shifting the whole
    distribution.
    """
    radius = max(1, round(RADIUS_FRACTION * max(content_lightness.shape)))
    x = content_lightness.astype(np.float32)
    t = target_lightness.astype(np.float32)
    mean_x = _box(x, radius)
    variance_x = np.maximum(_box(x * x, radius) - mean_x * mean_x, 0.0)
    slope, offset = _regression(x, t, radius, mean_x, variance_x)
    wanted = _quantiles(t if distribution is None else distribution)
    goal = t
    for _ in range(HISTOGRAM_ITERATIONS):
        fitted = slope * x + offset
        have = _quantiles(fitted) + np.arange(QUANTILES) * 1e-7  # strictly increasing
        goal = goal + (np.interp(fitted, have, wanted) - fitted)
        slope, offset = _regression(x, goal, radius, mean_x, variance_x)
    return LightnessMaps(slope, offset, _box(mean_x, radius))
