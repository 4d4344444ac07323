"""Two-scale tone transfer (after Bae, Paris and Durand 2006, with a guided filter).

Luma splits into a *base* layer (large-scale lighting: an edge-preserving smoothing) and a
*detail* layer (local contrast: luma minus base). The reference's tonality is transferred by
histogram-matching the base layers, its "textureness" by scaling the detail layer with a
clamped gain. The guided filter (He, Sun and Tang) is used because, unlike the bilateral
filter, it does not reverse gradients, so no halos appear at strong edges.

All arrays are float32; luma is sRGB-encoded Rec.601 luma in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Filter radius as a fraction of the image's long side, so a thumbnail and the full-size
# image split into the same layers.
RADIUS_FRACTION = 0.015
EPSILON = 0.01  # guided-filter regulariser: edges with contrast well above 0.1 are kept
CURVE_SIZE = 256
DETAIL_GAIN_RANGE = (0.7, 1.5)
MIN_CURVE_SLOPE = 0.35
# Full-resolution coefficients are computed at this fraction of the output size and
# upsampled inside the renderer ("fast guided filter", He and Sun 2015).
COEFFICIENT_SCALE = 0.25


def luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1] -> (H, W) float32 Rec.601 luma."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (rgb.astype(np.float32) @ weights).astype(np.float32)


def guided_coefficients(y: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Self-guided filter coefficients (a, b), (H, W) float32 each: base = a * y + b."""
    size = (2 * radius + 1, 2 * radius + 1)
    mean = cv2.boxFilter(y, -1, size)
    variance = cv2.boxFilter(y * y, -1, size) - mean * mean
    a = variance / (variance + EPSILON)
    b = mean - a * mean
    return cv2.boxFilter(a, -1, size), cv2.boxFilter(b, -1, size)


def radius_for(shape: tuple[int, ...]) -> int:
    return max(1, round(RADIUS_FRACTION * max(shape[:2])))


def base_layer(y: np.ndarray) -> np.ndarray:
    a, b = guided_coefficients(y, radius_for(y.shape))
    return a * y + b


def coefficient_image(image: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """``image`` ((H, W, 3) uint8, any size) at the resolution of the coefficient maps for
    an output of ``output_size`` (width, height): COEFFICIENT_SCALE of it, uint8."""
    h, w = image.shape[:2]
    size = (
        max(8, round(output_size[0] * COEFFICIENT_SCALE)),
        max(8, round(output_size[1] * COEFFICIENT_SCALE)),
    )
    shrinking = size[0] * size[1] < w * h
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def coefficient_maps(small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Low-resolution (a, b) maps for the renderer from ``coefficient_image(image)``."""
    y = luma(small.astype(np.float32) / 255.0)
    return guided_coefficients(y, radius_for(y.shape))


@dataclass
class ToneFit:
    """base_curve: (CURVE_SIZE,) float32 new base for base in [0, 1]; detail_gain: float."""

    base_curve: np.ndarray
    detail_gain: float

    def scaled(self, strength: float) -> ToneFit:
        """The same transfer at ``strength`` (0 = identity, 1 = as fitted, >1 = beyond)."""
        identity = np.linspace(0, 1, CURVE_SIZE, dtype=np.float32)
        curve = identity + strength * (self.base_curve - identity)
        gain = 1.0 + strength * (self.detail_gain - 1.0)
        return ToneFit(np.clip(curve, -0.1, 1.1).astype(np.float32), float(max(gain, 0.3)))


def identity_tone() -> ToneFit:
    return ToneFit(np.linspace(0, 1, CURVE_SIZE, dtype=np.float32), 1.0)


def _detail_energy(detail: np.ndarray) -> float:
    return float(np.mean(np.abs(detail))) + 1e-4


def fit_tone(content_rgb: np.ndarray, reference_rgb: np.ndarray) -> ToneFit:
    """Fit the base curve and detail gain on thumbnails ((H, W, 3) float32 in [0, 1])."""
    y_c, y_r = luma(content_rgb), luma(reference_rgb)
    base_c, base_r = base_layer(y_c), base_layer(y_r)
    levels = np.linspace(0.0, 1.0, 129)
    xs = np.quantile(base_c, levels) + np.arange(levels.size) * 1e-6
    ys = np.quantile(base_r, levels)
    grid = np.linspace(0.0, 1.0, CURVE_SIZE)
    curve = np.interp(grid, xs, ys)
    # Outside the content's range, continue with slope 1 rather than flattening.
    curve = np.where(grid < xs[0], ys[0] + (grid - xs[0]), curve)
    curve = np.where(grid > xs[-1], ys[-1] + (grid - xs[-1]), curve)
    # Limit the slope: a base curve that crushes a range (a night reference) leaves the
    # detail there to quantisation noise. The colour LUT still matches the final lightness.
    steps = np.clip(np.diff(curve), MIN_CURVE_SLOPE / (CURVE_SIZE - 1), None)
    curve = np.concatenate([[0.0], np.cumsum(steps)])
    curve += np.median(ys) - np.interp(np.median(xs), grid, curve)
    gain = _detail_energy(y_r - base_r) / _detail_energy(y_c - base_c)
    gain = float(np.clip(gain, *DETAIL_GAIN_RANGE))
    return ToneFit(curve.astype(np.float32), gain)


def apply_tone(rgb: np.ndarray, fit: ToneFit) -> np.ndarray:
    """Reference implementation on a (H, W, 3) float image (used on thumbnails)."""
    y = luma(rgb)
    base = base_layer(y)
    new_y = np.interp(base, np.linspace(0, 1, CURVE_SIZE), fit.base_curve) + fit.detail_gain * (
        y - base
    )
    return rgb + (new_y - y)[..., None]
