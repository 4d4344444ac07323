"""Rendering a fitted look: two compiled passes over the pixels.

Everything expensive (fitting the colour model, the tone curve, grain statistics) happens
on thumbnails. Here every operation is per pixel, or reads smooth low-resolution maps, so
nothing can move geometry.

Pass 1 runs at the content's own resolution (or the output's, when the content is larger),
values are sRGB-encoded floats in [0, 1]:
1. two-scale tone: luma Y = base + detail, where base is an edge-preserving (guided
   filter) smoothing of Y; Y' = curve(base) + gain * detail, added equally to R, G, B;
2. colour: in dark, near-neutral pixels the chroma (Cb, Cr) moves to its spatial average
   there, as where the LUT was fitted (``colour.calm_dark_chroma``; the LUT's large gain
   on such a cluster would turn its noise into blotches); then per-channel shaper and
   tetrahedral lookup in the 3D LUT;
3. lightness (when the plan has lightness maps): CIE L* set to a locally affine function
   of the content's L*, chromaticity as the LUT made it (``lightness``);
4. face guard (inside the soft face mask): the original pixel through its face's own
   affine YCbCr map, which the engine fits to the look's average change on that face and
   limits (``engine.face_maps``);
5. keep-mask (directive "keep the original background"): blend back to the original;
6. vignette: multiply by 1 - v * r^2 (r = 1 at the corners).
The result is resized to the output size (Lanczos when enlarging: a colour map applied
before enlarging mixes no colours the content does not have, and touches a fraction of
the pixels). Pass 2 runs at the output resolution:
7. grain: add a tiled, spatially correlated noise template scaled by an intensity curve;
8. highlight roll-off (soft knee) and TPDF dither, then quantise to uint8.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numba
import numpy as np

from photoremix.engines.classic.colour import (
    CALM_CHROMA,
    CALM_LUMA,
    dark_chroma_average,
)
from photoremix.engines.classic.lightness import LightnessMaps

GRAIN_TEMPLATE_SIZE = 512  # power of two: tiling uses a bit mask
# Per-face affine YCbCr map parameters: a, b, s, d_cb, d_cr (``RenderPlan.face_maps``).
FACE_MAP_CHANNELS = 5

# Transfer-function tables of the lightness step, indexed by a square root (where both
# functions are smooth); their error is below 0.1 code values.
TABLE_SIZE = 1024
LINEAR_TABLE_RANGE = 2.0  # linear light up to this (sRGB 1.23) before clipping
# Largest factor a pixel's linear RGB is scaled by to reach its target lightness; the rest
# is added as grey, so near-black colours do not turn into saturated noise.
MAX_LIGHT_SCALE = 4.0


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded values (float array; negative values count as 0) -> linear light."""
    v = np.maximum(np.asarray(v, dtype=np.float64), 0.0)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """Linear light (float array; negative values count as 0) -> sRGB-encoded values."""
    v = np.maximum(np.asarray(v, dtype=np.float64), 0.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def luminance_to_lstar(y: np.ndarray) -> np.ndarray:
    """Relative luminance Y (white = 1) -> CIE L* (0..100)."""
    y = np.asarray(y, dtype=np.float64)
    return np.where(y > 0.008856, 116 * np.cbrt(y) - 16, 903.3 * y)


_ROOTS = np.linspace(0.0, 1.0, TABLE_SIZE)
_SRGB8_LINEAR = srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)
# sqrt(Y) in [0, 1] -> L* (interpolated); sqrt(linear / LINEAR_TABLE_RANGE) in [0, 1] ->
# sRGB value (4x finer, nearest entry: the encoding runs three times per pixel)
_ROOT_LSTAR = luminance_to_lstar(_ROOTS**2).astype(np.float32)
_ROOT_SRGB = linear_to_srgb(np.linspace(0, 1, 4 * TABLE_SIZE) ** 2 * LINEAR_TABLE_RANGE).astype(
    np.float32
)

# The kernel is parallel over rows and already uses every core, so concurrent renders gain
# nothing; and numba's fallback "workqueue" threading layer aborts the process when two
# threads launch parallel kernels at once. The service runs engines in worker threads.
_render_lock = threading.Lock()


@dataclass
class RenderPlan:
    """Everything the kernels need besides the content pixels.

    shaper: (3, N) float32 per-channel map of value in [0, 1] to LUT grid coordinate in [0, 1].
    lut: (S, S, S, 3) float32 RGB LUT values indexed [r, g, b] in grid coordinates.
    coef_a, coef_b: (h, w) float32 low-resolution guided-filter coefficients: base = a*Y + b.
    base_curve: (256,) float32, new base value for base in [0, 1] (linear interpolation).
    detail_gain, face_detail_gain: multipliers of the detail layer outside / inside faces.
    face_mask: (h, w) uint8 soft mask (255 = face) at the content's size, or (1, 1) zeros
        when there are no faces.
    keep_mask: (h, w) uint8 soft mask (255 = restyle, 0 = keep original) at the content's
        size, or (1, 1) of 255.
    face_maps: (h, w, 5) float32 maps of each face's affine YCbCr map (a, b, s, d_cb, d_cr:
        Y' = a Y + b, (Cb', Cr') = s (Cb, Cr) + (d_cb, d_cr), sRGB-encoded values in 0..1),
        constant over each face and read where face_mask > 0 (any grid; resampled to
        coef_a's); ``identity_face_maps()`` (1, 1, 5) for no change.
    vignette: strength v of the radial falloff 1 - v*r^2.
    grain: (T, T, 3) float32 unit-variance templates for Y, Cb, Cr; grain_curve (16,) luma
        noise std (0..1 units) as a function of output luma; grain_chroma: Cb/Cr scale
        relative to luma; face_grain: share of the grain kept inside faces (grain changes
        the identity embedding); grain_offset: (dy, dx) into the template.
    knee: highlight roll-off start. dither_seed: seeds the TPDF dither.
    lightness: locally affine lightness maps (``lightness.fit_lightness``, resampled to
        the grid of coef_a); None = the LUT's own lightness. Inside faces the slope is
        moved towards face_detail_gain, keeping the local mean.
    dark_chroma_calm: share (0..1) of step 2's move of dark, near-neutral chroma to its
        spatial average; 1 for a LUT fitted by ``look.fit_look`` (fitted on content so
        treated), 0 = off.
    """

    shaper: np.ndarray
    lut: np.ndarray
    coef_a: np.ndarray
    coef_b: np.ndarray
    base_curve: np.ndarray
    detail_gain: float
    face_detail_gain: float
    face_mask: np.ndarray
    keep_mask: np.ndarray
    face_maps: np.ndarray
    vignette: float
    grain: np.ndarray
    grain_curve: np.ndarray
    face_grain: float
    grain_chroma: float
    grain_offset: tuple[int, int]
    knee: float
    dither_seed: int
    lightness: LightnessMaps | None = None
    dark_chroma_calm: float = 1.0


def identity_face_maps() -> np.ndarray:
    """(1, 1, 5) float32 face maps that leave every face pixel as it is."""
    return np.array([[[1.0, 0.0, 1.0, 0.0, 0.0]]], np.float32)


@numba.njit(cache=True)
def _sample_positions(n_out: int, n_grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Bilinear sampling of a low-resolution grid at each output row (or column): the two
    # grid indices and the weight of the second, pixel centres aligned.
    lower = np.empty(n_out, np.int64)
    upper = np.empty(n_out, np.int64)
    weight = np.empty(n_out, np.float64)
    step = n_grid / n_out
    for i in range(n_out):
        f = min(max((i + 0.5) * step - 0.5, 0.0), n_grid - 1.0)
        lower[i] = int(f)
        upper[i] = min(lower[i] + 1, n_grid - 1)
        weight[i] = f - lower[i]
    return lower, upper, weight


@numba.njit(cache=True, inline="always")
def _curve(table: np.ndarray, v: float) -> float:
    n = table.shape[0]
    pos = min(max(v, 0.0), 1.0) * (n - 1)
    i = min(int(pos), n - 2)
    t = pos - i
    return table[i] * (1 - t) + table[i + 1] * t


@numba.njit(cache=True, inline="always")
def _mix(top, bottom, x_lo, x_hi, k, w00, w01, w10, w11):  # fmt: skip
    # Bilinear mix of channel k of two rows of an (h, w, channels) map.
    return w00 * top[x_lo, k] + w01 * top[x_hi, k] + w10 * bottom[x_lo, k] + w11 * bottom[x_hi, k]


@numba.njit(cache=True, inline="always")
def _encode(root_srgb: np.ndarray, linear: float) -> float:
    # Linear light -> sRGB value: nearest entry of the square-root-indexed table.
    last = root_srgb.shape[0] - 1
    position = math.sqrt(max(linear, 0.0) * (1.0 / LINEAR_TABLE_RANGE)) * last
    return root_srgb[min(int(position + 0.5), last)]


# The look between the passes is stored as uint16 (half the memory of float32 at 4 MP):
# values in [LOOK_LOW, LOOK_LOW + LOOK_RANGE] in steps of 0.006 code values; beyond, the
# knee or the quantiser would clip them anyway.
LOOK_LOW, LOOK_RANGE = -0.25, 1.6


@numba.njit(cache=True, inline="always")
def _store(v: float) -> int:
    return int(min(max((v - LOOK_LOW) * (65535.0 / LOOK_RANGE) + 0.5, 0.0), 65535.0))


@numba.njit(cache=True, inline="always")
def _load(q: int) -> float:
    return q * (LOOK_RANGE / 65535.0) + LOOK_LOW


@numba.njit(cache=True, inline="always")
def _hash01(a: int, b: int, seed: int) -> float:
    # A small integer hash (splitmix-style) -> uniform [0, 1); enough for dither.
    h = (a * 0x9E3779B1 + b * 0x85EBCA77 + seed * 0xC2B2AE3D) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x2C1B3C6D) & 0xFFFFFFFF
    h ^= h >> 12
    h = (h * 0x297A2D39) & 0xFFFFFFFF
    h ^= h >> 15
    return h / 4294967296.0


@numba.njit(cache=True, inline="always")
def _tetrahedral(lut, ir, ig, ib, tr, tg, tb):  # fmt: skip
    # Same rule as colour.tetrahedral_corners: walk from the base corner along the axes in
    # order of decreasing fractional part; neutral colours stay on the cube's diagonal.
    # Returns the interpolated (r, g, b); the walk is chosen once for all three channels.
    if tr >= tg:
        if tg >= tb:
            w1, w2, w3 = tr - tg, tg - tb, tb
            r1, g1, b1, r2, g2, b2 = ir + 1, ig, ib, ir + 1, ig + 1, ib
        elif tr >= tb:
            w1, w2, w3 = tr - tb, tb - tg, tg
            r1, g1, b1, r2, g2, b2 = ir + 1, ig, ib, ir + 1, ig, ib + 1
        else:
            w1, w2, w3 = tb - tr, tr - tg, tg
            r1, g1, b1, r2, g2, b2 = ir, ig, ib + 1, ir + 1, ig, ib + 1
    elif tb > tg:
        w1, w2, w3 = tb - tg, tg - tr, tr
        r1, g1, b1, r2, g2, b2 = ir, ig, ib + 1, ir, ig + 1, ib + 1
    elif tb > tr:
        w1, w2, w3 = tg - tb, tb - tr, tr
        r1, g1, b1, r2, g2, b2 = ir, ig + 1, ib, ir, ig + 1, ib + 1
    else:
        w1, w2, w3 = tg - tr, tr - tb, tb
        r1, g1, b1, r2, g2, b2 = ir, ig + 1, ib, ir + 1, ig + 1, ib
    w0 = 1 - w1 - w2 - w3
    out0 = (
        w0 * lut[ir, ig, ib, 0]
        + w1 * lut[r1, g1, b1, 0]
        + w2 * lut[r2, g2, b2, 0]
        + w3 * lut[ir + 1, ig + 1, ib + 1, 0]
    )
    out1 = (
        w0 * lut[ir, ig, ib, 1]
        + w1 * lut[r1, g1, b1, 1]
        + w2 * lut[r2, g2, b2, 1]
        + w3 * lut[ir + 1, ig + 1, ib + 1, 1]
    )
    out2 = (
        w0 * lut[ir, ig, ib, 2]
        + w1 * lut[r1, g1, b1, 2]
        + w2 * lut[r2, g2, b2, 2]
        + w3 * lut[ir + 1, ig + 1, ib + 1, 2]
    )
    return out0, out1, out2


@numba.njit(cache=True, inline="always")
def _quantise(v: float, knee: float, dither: float) -> int:
    # Soft knee instead of hard clipping keeps highlight detail; dither breaks up banding.
    if v > knee:
        v = knee + (1 - knee) * math.tanh((v - knee) / (1 - knee))
    q = v * 255.0 + dither
    return 0 if q < 0.5 else (255 if q >= 254.5 else int(q + 0.5))


@numba.njit(cache=True, parallel=True, fastmath=True)
def _render_look(
    content, shaper, lut, maps, has_light, base_curve, detail_gain, face_detail_gain,
    face_mask, keep_mask, vignette, face_grain, dark_chroma_calm,
    srgb8_linear, root_lstar, root_srgb, look,
):  # fmt: skip
    # Steps 1-6 -> look: (H, W, 4) uint16 (``_store``), sRGB values and the share of grain
    # each pixel gets (less inside faces).
    H, W, _ = content.shape
    S = lut.shape[0]
    col_lo, col_hi, col_t = _sample_positions(W, maps.shape[1])
    row_lo, row_hi, row_t = _sample_positions(H, maps.shape[0])
    has_faces = face_mask.shape[0] == H
    has_keep = keep_mask.shape[0] == H
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    inv_r2 = 1.0 / (cy * cy + cx * cx)
    for y in numba.prange(H):
        top, bottom, ty = maps[row_lo[y]], maps[row_hi[y]], row_t[y]
        for x in range(W):
            r0 = content[y, x, 0] / 255.0
            g0 = content[y, x, 1] / 255.0
            b0 = content[y, x, 2] / 255.0
            y0 = 0.299 * r0 + 0.587 * g0 + 0.114 * b0
            m_face = face_mask[y, x] / 255.0 if has_faces else 0.0

            # the low-resolution maps at this pixel: tone coefficients a and b, lightness
            # slope, offset and local mean
            x_lo, x_hi, tx = col_lo[x], col_hi[x], col_t[x]
            w00, w01 = (1 - ty) * (1 - tx), (1 - ty) * tx
            w10, w11 = ty * (1 - tx), ty * tx
            m = (
                _mix(top, bottom, x_lo, x_hi, 0, w00, w01, w10, w11),
                _mix(top, bottom, x_lo, x_hi, 1, w00, w01, w10, w11),
                _mix(top, bottom, x_lo, x_hi, 2, w00, w01, w10, w11),
                _mix(top, bottom, x_lo, x_hi, 3, w00, w01, w10, w11),
                _mix(top, bottom, x_lo, x_hi, 4, w00, w01, w10, w11),
            )

            # 1. two-scale tone
            base = m[0] * y0 + m[1]
            gain = detail_gain + (face_detail_gain - detail_gain) * m_face
            dy = _curve(base_curve, base) + gain * (y0 - base) - y0
            r, g, b = r0 + dy, g0 + dy, b0 + dy

            # 2. colour LUT, tetrahedral; dark, near-neutral chroma first moves to its
            # spatial average (adding dy above left Cb and Cr as they were)
            cb0 = -0.168736 * r0 - 0.331264 * g0 + 0.5 * b0
            cr0 = 0.5 * r0 - 0.418688 * g0 - 0.081312 * b0
            chroma0 = math.sqrt(cb0 * cb0 + cr0 * cr0)
            calm = dark_chroma_calm * min(
                max((CALM_LUMA[1] - y0) / (CALM_LUMA[1] - CALM_LUMA[0]), 0.0), 1.0
            )
            calm *= min(
                max((CALM_CHROMA[1] - chroma0) / (CALM_CHROMA[1] - CALM_CHROMA[0]), 0.0), 1.0
            )
            if calm > 0.0:
                d_cb = calm * (_mix(top, bottom, x_lo, x_hi, 10, w00, w01, w10, w11) - cb0)
                d_cr = calm * (_mix(top, bottom, x_lo, x_hi, 11, w00, w01, w10, w11) - cr0)
                r += 1.402 * d_cr
                g += -0.344136 * d_cb - 0.714136 * d_cr
                b += 1.772 * d_cb
            pr = _curve(shaper[0], r) * (S - 1)
            pg = _curve(shaper[1], g) * (S - 1)
            pb = _curve(shaper[2], b) * (S - 1)
            ir, ig, ib = min(int(pr), S - 2), min(int(pg), S - 2), min(int(pb), S - 2)
            tr, tg, tb = pr - ir, pg - ig, pb - ib
            c_r, c_g, c_b = _tetrahedral(lut, ir, ig, ib, tr, tg, tb)

            # 3. locally affine lightness: L* = a * L*(content) + b, chromaticity as the
            # LUT made it. With it, the LUT holds linear light: scale it to the target
            # luminance (beyond MAX_LIGHT_SCALE add grey, so near-black colours do not
            # turn into saturated noise), then encode as sRGB.
            if has_light:
                lum0 = (
                    0.212671 * srgb8_linear[content[y, x, 0]]
                    + 0.715160 * srgb8_linear[content[y, x, 1]]
                    + 0.072169 * srgb8_linear[content[y, x, 2]]
                )
                l0 = _curve(root_lstar, math.sqrt(lum0))
                # in faces the slope (local contrast) follows the face's detail gain
                slope = m[2] + (face_detail_gain - m[2]) * m_face
                lt = slope * l0 + m[3] + (m[2] - slope) * m[4]
                cube = (lt + 16.0) * (1.0 / 116.0)
                lum_t = cube * cube * cube if lt > 8.0 else max(lt, 0.0) * (1.0 / 903.3)
                lum = 0.212671 * c_r + 0.715160 * c_g + 0.072169 * c_b
                scale = min(lum_t / lum, MAX_LIGHT_SCALE) if lum > 1e-6 else 0.0
                grey = lum_t - scale * lum
                c_r = _encode(root_srgb, c_r * scale + grey)
                c_g = _encode(root_srgb, c_g * scale + grey)
                c_b = _encode(root_srgb, c_b * scale + grey)

            # 4. face guard: inside faces the output is the original pixel through its
            # face's own affine YCbCr map (Y' = a Y + b, CbCr' = s CbCr + d), one per face,
            # read from the low-resolution maps: the face takes the look's average change
            # rigidly, and its local detail, where identity lives, stays the original's.
            if m_face > 0.0:
                fa = _mix(top, bottom, x_lo, x_hi, 5, w00, w01, w10, w11)
                fb = _mix(top, bottom, x_lo, x_hi, 6, w00, w01, w10, w11)
                fs = _mix(top, bottom, x_lo, x_hi, 7, w00, w01, w10, w11)
                fcb = _mix(top, bottom, x_lo, x_hi, 8, w00, w01, w10, w11)
                fcr = _mix(top, bottom, x_lo, x_hi, 9, w00, w01, w10, w11)
                yg = fa * y0 + fb
                cbg = fs * (-0.168736 * r0 - 0.331264 * g0 + 0.5 * b0) + fcb
                crg = fs * (0.5 * r0 - 0.418688 * g0 - 0.081312 * b0) + fcr
                rg = yg + 1.402 * crg
                gg = yg - 0.344136 * cbg - 0.714136 * crg
                bg = yg + 1.772 * cbg
                c_r += (rg - c_r) * m_face
                c_g += (gg - c_g) * m_face
                c_b += (bg - c_b) * m_face

            # 5. keep the original where the keep-mask says so
            if has_keep:
                m_keep = keep_mask[y, x] / 255.0
                c_r = r0 + (c_r - r0) * m_keep
                c_g = g0 + (c_g - g0) * m_keep
                c_b = b0 + (c_b - b0) * m_keep

            # 6. vignette
            ddy, ddx = y - cy, x - cx
            falloff = 1.0 - vignette * (ddy * ddy + ddx * ddx) * inv_r2

            look[y, x, 0] = _store(c_r * falloff)
            look[y, x, 1] = _store(c_g * falloff)
            look[y, x, 2] = _store(c_b * falloff)
            look[y, x, 3] = _store(1.0 - (1.0 - face_grain) * m_face)


@numba.njit(cache=True, parallel=True, fastmath=True)
def _finish(
    look, grain, grain_curve, grain_chroma, grain_dy, grain_dx, knee, dither_seed, out
):  # fmt: skip
    # Steps 7-8 at the output resolution: grain, roll-off, dither, quantise.
    H, W, _ = out.shape
    tmask = grain.shape[0] - 1
    for y in numba.prange(H):
        for x in range(W):
            c_r, c_g, c_b = _load(look[y, x, 0]), _load(look[y, x, 1]), _load(look[y, x, 2])

            # 7. grain, strength following the output luma
            y_out = 0.299 * c_r + 0.587 * c_g + 0.114 * c_b
            amount = _curve(grain_curve, y_out) * _load(look[y, x, 3])
            ty_, tx_ = (y + grain_dy) & tmask, (x + grain_dx) & tmask
            n_y = grain[ty_, tx_, 0] * amount
            n_cb = grain[ty_, tx_, 1] * amount * grain_chroma
            n_cr = grain[ty_, tx_, 2] * amount * grain_chroma

            # 8. roll-off, dither, quantise
            d = _hash01(y, x, dither_seed) + _hash01(x, y, dither_seed + 1) - 1.0
            out[y, x, 0] = _quantise(c_r + n_y + 1.402 * n_cr, knee, d)
            out[y, x, 1] = _quantise(c_g + n_y - 0.344136 * n_cb - 0.714136 * n_cr, knee, d)
            out[y, x, 2] = _quantise(c_b + n_y + 1.772 * n_cb, knee, d)


def render(
    content: np.ndarray, plan: RenderPlan, output_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Apply ``plan`` to ``content`` ((h, w, 3) uint8) -> (H, W, 3) uint8.

    output_size: (W, H), default the content's size. Steps 1-6 run at the content's own
    resolution (the masks in ``plan`` are at that size); the result is then resized
    (Lanczos when enlarging, area when shrinking), and grain and dither are added at the
    output resolution.
    """
    h, w = content.shape[:2]
    width, height = output_size if output_size is not None else (w, h)
    lut = plan.lut
    has_light = plan.lightness is not None
    grid = (plan.coef_a.shape[1], plan.coef_a.shape[0])
    maps = [plan.coef_a, plan.coef_b] + [np.zeros_like(plan.coef_a)] * 3
    if plan.lightness is not None:  # the lightness step works in linear light
        lut = srgb_to_linear(lut).astype(np.float32)
        light = plan.lightness
        maps[2:] = [
            cv2.resize(m.astype(np.float32), grid, interpolation=cv2.INTER_LINEAR)
            for m in (light.slope, light.offset, light.local_mean)
        ]
    for channel in range(FACE_MAP_CHANNELS):
        face_map = plan.face_maps[..., channel]
        if face_map.shape == (1, 1):
            maps.append(np.full_like(plan.coef_a, face_map[0, 0]))
        elif face_map.shape != plan.coef_a.shape:
            maps.append(cv2.resize(face_map, grid, interpolation=cv2.INTER_LINEAR))
        else:
            maps.append(face_map)
    # the content's dark, near-neutral chroma averaged, at the maps' grid (Cb, Cr)
    small = cv2.resize(content, grid, interpolation=cv2.INTER_AREA)
    average = dark_chroma_average(small.astype(np.float32) / 255.0)
    maps += [average[..., 0], average[..., 1]]
    look = np.empty((h, w, 4), np.uint16)
    out = np.empty((height, width, 3), np.uint8)
    with _render_lock:
        _render_look(
            np.ascontiguousarray(content), plan.shaper, lut,
            np.ascontiguousarray(np.stack(maps, axis=-1), dtype=np.float32), has_light,
            plan.base_curve,
            plan.detail_gain, plan.face_detail_gain, plan.face_mask, plan.keep_mask,
            plan.vignette, plan.face_grain, plan.dark_chroma_calm,
            _SRGB8_LINEAR, _ROOT_LSTAR, _ROOT_SRGB, look,
        )  # fmt: skip
        if (w, h) != (width, height):
            enlarging = width * height > w * h
            interpolation = cv2.INTER_LANCZOS4 if enlarging else cv2.INTER_AREA
            look = cv2.resize(look, (width, height), interpolation=interpolation)
        _finish(
            look, plan.grain, plan.grain_curve, plan.grain_chroma,
            plan.grain_offset[0], plan.grain_offset[1], plan.knee, plan.dither_seed, out,
        )  # fmt: skip
    return out
