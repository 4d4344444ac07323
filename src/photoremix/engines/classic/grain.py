"""Film/sensor grain: measured on the reference, synthesised on the output.

A simplified form of the AV1 film-grain model (Norkin and Birkbeck 2018): grain is the
noise measured in the flattest blocks only (so texture and edges are
not mistaken for noise), with a strength that depends on intensity (a 16-point curve) and a
spatial correlation (summarised as the sigma of a Gaussian that colours white noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from photoremix.engines.classic.tone import luma

CURVE_POINTS = 16
BLOCK = 16
# Grain is measured at native resolution (downscaling would average it away) on a central
# crop of at most this size, which holds plenty of flat blocks.
ANALYSIS_CROP = 1024
# Below this noise std (in 0..1 units; 1/255 is one code value) a reference is "clean":
# residuals that small are mostly JPEG noise and fine texture, not grain.
MIN_VISIBLE_STD = 2.0 / 255
# Share of the measured grain that is synthesised. The flat-block residual of a JPEG still
# holds some compression noise and texture, and full-strength grain measurably erodes the
# content's structure (SSIM structure term) in flat regions: on the evaluation set 0.25
# cost 0.0007 of the structure median for 0.005 of texture, so a tenth is kept.
TRANSFER_SHARE = 0.1
# Film and sensor grain sits at 1-5 code values; more than that in "flat" blocks is
# texture (foliage, brush strokes), which the texture stage owns, not grain.
MAX_STD = 5.0 / 255
FLAT_SHARE = 0.10
# Grain is the residual against this blur, measured in the flattest blocks, where the
# blur removes the (smooth) image and leaves the noise.
RESIDUAL_SIGMA = 3.0


@dataclass
class GrainModel:
    """curve: (CURVE_POINTS,) float32 noise std (0..1 units) vs luma in [0, 1].
    sigma: spatial correlation in pixels at the analysed resolution.
    chroma: chroma noise std relative to luma noise std.
    analysed_long_side: long side of the image the model was measured on.
    """

    curve: np.ndarray
    sigma: float
    chroma: float
    analysed_long_side: int

    @property
    def amount(self) -> float:
        return float(np.median(self.curve))


def no_grain() -> GrainModel:
    return GrainModel(np.zeros(CURVE_POINTS, np.float32), 0.0, 0.0, 1)


def _high_pass(image: np.ndarray) -> np.ndarray:
    return image - cv2.GaussianBlur(image, (0, 0), RESIDUAL_SIGMA)


@cache
def _residual_gain(sigma: float) -> float:
    """Std of the residual of unit-std noise coloured by a Gaussian of ``sigma``: the
    residual keeps less of coarser grain, so its std is divided by this. Cached: callers
    pass sigma rounded to 0.05, and the answer only depends on it."""
    noise = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    if sigma > 0.3:
        noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    noise /= noise.std()
    return float(_high_pass(noise)[16:-16, 16:-16].std())


def estimate_grain(image: np.ndarray) -> GrainModel:
    """Measure the grain of an (H, W, 3) uint8 image."""
    h, w = image.shape[:2]
    top, left = max(0, (h - ANALYSIS_CROP) // 2), max(0, (w - ANALYSIS_CROP) // 2)
    image = image[top : top + ANALYSIS_CROP, left : left + ANALYSIS_CROP]
    rgb = image.astype(np.float32) / 255.0
    y = luma(rgb)
    smooth = cv2.GaussianBlur(y, (0, 0), 1.5)
    residual = _high_pass(y)
    bh, bw = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    if bh < 2 or bw < 2:
        return no_grain()

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[: bh * BLOCK, : bw * BLOCK].reshape(bh, BLOCK, bw, BLOCK).swapaxes(1, 2)

    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    activity = blocks(gx * gx + gy * gy).mean(axis=(2, 3)).ravel()
    res_blocks = blocks(residual).reshape(-1, BLOCK, BLOCK)
    means = blocks(smooth).mean(axis=(2, 3)).ravel()
    flat = activity <= np.quantile(activity, FLAT_SHARE)
    # Robust std (median absolute deviation) so a stray edge in a block does not count.
    flat_res = res_blocks[flat]
    centred = flat_res.reshape(-1, BLOCK * BLOCK)
    centred = centred - np.median(centred, 1, keepdims=True)
    stds = 1.4826 * np.median(np.abs(centred), 1)
    flat_means = means[flat]

    # Spatial correlation from the lag-1 autocorrelation of the flat residual: Gaussian-
    # filtered white noise with sigma s has lag-1 autocorrelation exp(-1 / (4 s^2)).
    a, b = flat_res[:, :, :-1].ravel(), flat_res[:, :, 1:].ravel()
    rho = float(np.corrcoef(a, b)[0, 1]) if a.size > 16 and a.std() > 0 and b.std() > 0 else 0.0
    sigma = 0.0 if rho <= 0.05 else float(np.clip(1 / (2 * np.sqrt(-np.log(min(rho, 0.95)))), 0, 3))

    sigma = round(sigma * 20) / 20
    stds = stds / _residual_gain(sigma)

    centres = (np.arange(CURVE_POINTS) + 0.5) / CURVE_POINTS
    bins = np.clip((flat_means * CURVE_POINTS).astype(int), 0, CURVE_POINTS - 1)
    curve = np.full(CURVE_POINTS, np.nan)
    for i in range(CURVE_POINTS):
        if np.count_nonzero(bins == i) >= 3:
            curve[i] = np.median(stds[bins == i])
    known = ~np.isnan(curve)
    if not known.any():
        return no_grain()
    curve = np.interp(centres, centres[known], curve[known])
    curve = np.clip(curve, 0.0, MAX_STD).astype(np.float32)
    if np.median(curve) < MIN_VISIBLE_STD:
        return GrainModel(np.zeros(CURVE_POINTS, np.float32), 0.0, 0.0, max(h, w))

    cb = (rgb[..., 2] - y) * 0.564
    cr = (rgb[..., 0] - y) * 0.713
    chroma_std = [
        blocks(_high_pass(c)).reshape(-1, BLOCK * BLOCK)[flat].std() / _residual_gain(sigma)
        for c in (cb, cr)
    ]
    chroma = float(np.clip(np.mean(chroma_std) / np.median(curve), 0, 1))
    return GrainModel(curve, sigma, chroma, max(h, w))


def grain_template(model: GrainModel, output_long_side: int, size: int, seed: int) -> np.ndarray:
    """(size, size, 3) float32 unit-std noise for Y, Cb, Cr, correlated like the reference's
    grain after scaling from the analysed resolution to the output resolution."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((size, size, 3), dtype=np.float32)
    sigma = model.sigma * output_long_side / max(model.analysed_long_side, 1)
    if sigma > 0.3:
        # Blur a wrap-padded copy so the tiled template has no seams.
        pad = int(np.ceil(3 * sigma))
        padded = np.pad(noise, ((pad, pad), (pad, pad), (0, 0)), mode="wrap")
        noise = cv2.GaussianBlur(padded, (0, 0), sigma)[pad:-pad, pad:-pad]
    noise /= noise.reshape(-1, 3).std(axis=0) + 1e-8
    return np.ascontiguousarray(noise)


def residual_grain(reference: GrainModel, content: GrainModel) -> GrainModel:
    """Grain to add so the content's own noise plus it matches the reference (in quadrature)."""
    curve = np.sqrt(np.maximum(reference.curve**2 - content.curve**2, 0.0)) * TRANSFER_SHARE
    curve = curve.astype(np.float32)
    return GrainModel(curve, reference.sigma, reference.chroma, reference.analysed_long_side)
