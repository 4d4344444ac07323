"""Full-resolution rendering of a fitted look: one fused pass over the pixels.

Everything expensive (fitting the colour model, the tone curve, grain statistics) happens
on thumbnails. At output resolution every operation is per pixel, or reads smooth
low-resolution coefficient maps, so nothing here can move geometry. Fusing the steps into
one compiled loop keeps a 4 MP render to tens of milliseconds and the memory to the input
and output buffers.

Per pixel, in order (values are sRGB-encoded floats in [0, 1]):
1. two-scale tone: luma Y = base + detail, where base is an edge-preserving (guided
   filter) smoothing of Y; Y' = curve(base) + gain * detail, added equally to R, G, B;
2. colour: per-channel shaper, then tetrahedral lookup in the 3D LUT;
3. face guard (inside the soft face mask): limit hue rotation, chroma change and luma gain
   relative to the original pixel, in YCbCr;
4. keep-mask (directive "keep the original background"): blend back to the original;
5. vignette: multiply by 1 - v * r^2 (r = 1 at the corners);
6. grain: add a tiled, spatially correlated noise template scaled by an intensity curve;
7. highlight roll-off (soft knee) and TPDF dither, then quantise to uint8.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numba
import numpy as np

GRAIN_TEMPLATE_SIZE = 512  # power of two: tiling uses a bit mask

# The kernel is parallel over rows and already uses every core, so concurrent renders gain
# nothing; and numba's fallback "workqueue" threading layer aborts the process when two
# threads launch parallel kernels at once. The service runs engines in worker threads.
_render_lock = threading.Lock()


@dataclass
class RenderPlan:
    """Everything the kernel needs besides the content pixels.

    shaper: (3, N) float32 per-channel map of value in [0, 1] to LUT grid coordinate in [0, 1].
    lut: (S, S, S, 3) float32 RGB LUT values indexed [r, g, b] in grid coordinates.
    coef_a, coef_b: (h, w) float32 low-resolution guided-filter coefficients: base = a*Y + b.
    base_curve: (256,) float32, new base value for base in [0, 1] (linear interpolation).
    detail_gain, face_detail_gain: multipliers of the detail layer outside / inside faces.
    face_mask: (H, W) uint8 soft mask (255 = face) or (1, 1) zeros when there are no faces.
    keep_mask: (H, W) uint8 soft mask (255 = restyle, 0 = keep original) or (1, 1) of 255.
    guard_hue, guard_chroma, guard_gain: face guard limits (radians; max chroma ratio
        deviation; max luma gain deviation).
    vignette: strength v of the radial falloff 1 - v*r^2.
    grain: (T, T, 3) float32 unit-variance templates for Y, Cb, Cr; grain_curve (16,) luma
        noise std (0..1 units) as a function of output luma; grain_chroma: Cb/Cr scale
        relative to luma; face_grain: share of the grain kept inside faces (grain changes
        the identity embedding); grain_offset: (dy, dx) into the template.
    knee: highlight roll-off start. dither_seed: seeds the TPDF dither.
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
    guard_hue: float
    guard_chroma: float
    guard_gain: float
    vignette: float
    grain: np.ndarray
    grain_curve: np.ndarray
    face_grain: float
    grain_chroma: float
    grain_offset: tuple[int, int]
    knee: float
    dither_seed: int


@numba.njit(cache=True, inline="always")
def _bilinear(grid: np.ndarray, fy: float, fx: float) -> float:
    h, w = grid.shape
    fy = min(max(fy, 0.0), h - 1.0)
    fx = min(max(fx, 0.0), w - 1.0)
    y0, x0 = int(fy), int(fx)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    ty, tx = fy - y0, fx - x0
    top = grid[y0, x0] * (1 - tx) + grid[y0, x1] * tx
    bottom = grid[y1, x0] * (1 - tx) + grid[y1, x1] * tx
    return top * (1 - ty) + bottom * ty


@numba.njit(cache=True, inline="always")
def _curve(table: np.ndarray, v: float) -> float:
    n = table.shape[0]
    pos = min(max(v, 0.0), 1.0) * (n - 1)
    i = min(int(pos), n - 2)
    t = pos - i
    return table[i] * (1 - t) + table[i + 1] * t


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
def _tetrahedral(lut, ir, ig, ib, tr, tg, tb, k):  # fmt: skip
    # Same rule as colour.tetrahedral_corners: walk from the base corner along the axes in
    # order of decreasing fractional part; neutral colours stay on the cube's diagonal.
    c000 = lut[ir, ig, ib, k]
    c111 = lut[ir + 1, ig + 1, ib + 1, k]
    if tr >= tg:
        if tg >= tb:
            return (
                (1 - tr) * c000
                + (tr - tg) * lut[ir + 1, ig, ib, k]
                + (tg - tb) * lut[ir + 1, ig + 1, ib, k]
                + tb * c111
            )
        if tr >= tb:
            return (
                (1 - tr) * c000
                + (tr - tb) * lut[ir + 1, ig, ib, k]
                + (tb - tg) * lut[ir + 1, ig, ib + 1, k]
                + tg * c111
            )
        return (
            (1 - tb) * c000
            + (tb - tr) * lut[ir, ig, ib + 1, k]
            + (tr - tg) * lut[ir + 1, ig, ib + 1, k]
            + tg * c111
        )
    if tb > tg:
        return (
            (1 - tb) * c000
            + (tb - tg) * lut[ir, ig, ib + 1, k]
            + (tg - tr) * lut[ir, ig + 1, ib + 1, k]
            + tr * c111
        )
    if tb > tr:
        return (
            (1 - tg) * c000
            + (tg - tb) * lut[ir, ig + 1, ib, k]
            + (tb - tr) * lut[ir, ig + 1, ib + 1, k]
            + tr * c111
        )
    return (
        (1 - tg) * c000
        + (tg - tr) * lut[ir, ig + 1, ib, k]
        + (tr - tb) * lut[ir + 1, ig + 1, ib, k]
        + tb * c111
    )


@numba.njit(cache=True, inline="always")
def _quantise(v: float, knee: float, dither: float) -> int:
    # Soft knee instead of hard clipping keeps highlight detail; dither breaks up banding.
    if v > knee:
        v = knee + (1 - knee) * math.tanh((v - knee) / (1 - knee))
    q = v * 255.0 + dither
    return 0 if q < 0.5 else (255 if q >= 254.5 else int(q + 0.5))


@numba.njit(cache=True, parallel=True, fastmath=True)
def _render(
    content, shaper, lut, coef_a, coef_b, base_curve, detail_gain, face_detail_gain,
    face_mask, keep_mask, guard_hue, guard_chroma, guard_gain, vignette,
    grain, grain_curve, face_grain, grain_chroma, grain_dy, grain_dx, knee, dither_seed, out,
):  # fmt: skip
    H, W, _ = content.shape
    S = lut.shape[0]
    ah, aw = coef_a.shape
    sy, sx = ah / H, aw / W
    has_faces = face_mask.shape[0] == H
    has_keep = keep_mask.shape[0] == H
    tmask = grain.shape[0] - 1
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    inv_r2 = 1.0 / (cy * cy + cx * cx)
    for y in numba.prange(H):
        fy = (y + 0.5) * sy - 0.5
        for x in range(W):
            r0 = content[y, x, 0] / 255.0
            g0 = content[y, x, 1] / 255.0
            b0 = content[y, x, 2] / 255.0
            y0 = 0.299 * r0 + 0.587 * g0 + 0.114 * b0
            m_face = face_mask[y, x] / 255.0 if has_faces else 0.0

            # 1. two-scale tone
            fx = (x + 0.5) * sx - 0.5
            base = _bilinear(coef_a, fy, fx) * y0 + _bilinear(coef_b, fy, fx)
            gain = detail_gain + (face_detail_gain - detail_gain) * m_face
            dy = _curve(base_curve, base) + gain * (y0 - base) - y0
            r, g, b = r0 + dy, g0 + dy, b0 + dy

            # 2. colour LUT, tetrahedral
            pr = _curve(shaper[0], r) * (S - 1)
            pg = _curve(shaper[1], g) * (S - 1)
            pb = _curve(shaper[2], b) * (S - 1)
            ir, ig, ib = min(int(pr), S - 2), min(int(pg), S - 2), min(int(pb), S - 2)
            tr, tg, tb = pr - ir, pg - ig, pb - ib
            c_r = _tetrahedral(lut, ir, ig, ib, tr, tg, tb, 0)
            c_g = _tetrahedral(lut, ir, ig, ib, tr, tg, tb, 1)
            c_b = _tetrahedral(lut, ir, ig, ib, tr, tg, tb, 2)

            # 3. face guard in YCbCr, relative to the original pixel
            if m_face > 0.0:
                cb0 = -0.168736 * r0 - 0.331264 * g0 + 0.5 * b0
                cr0 = 0.5 * r0 - 0.418688 * g0 - 0.081312 * b0
                y1 = 0.299 * c_r + 0.587 * c_g + 0.114 * c_b
                cb1 = -0.168736 * c_r - 0.331264 * c_g + 0.5 * c_b
                cr1 = 0.5 * c_r - 0.418688 * c_g - 0.081312 * c_b
                yg = min(max(y1, y0 * (1 - guard_gain) - 0.02), y0 * (1 + guard_gain) + 0.02)
                mag0 = math.sqrt(cb0 * cb0 + cr0 * cr0)
                mag1 = math.sqrt(cb1 * cb1 + cr1 * cr1)
                magg = min(max(mag1, mag0 * (1 - guard_chroma)), mag0 * (1 + guard_chroma) + 0.01)
                if mag0 > 0.01:
                    a0 = math.atan2(cr0, cb0)
                    da = math.atan2(cr1, cb1) - a0 if mag1 > 1e-6 else 0.0
                    da = (da + math.pi) % (2 * math.pi) - math.pi
                    da = min(max(da, -guard_hue), guard_hue)
                    cbg, crg = magg * math.cos(a0 + da), magg * math.sin(a0 + da)
                else:
                    scale = magg / mag1 if mag1 > 1e-6 else 0.0
                    cbg, crg = cb1 * scale, cr1 * scale
                rg = yg + 1.402 * crg
                gg = yg - 0.344136 * cbg - 0.714136 * crg
                bg = yg + 1.772 * cbg
                c_r += (rg - c_r) * m_face
                c_g += (gg - c_g) * m_face
                c_b += (bg - c_b) * m_face

            # 4. keep the original where the keep-mask says so
            if has_keep:
                m_keep = keep_mask[y, x] / 255.0
                c_r = r0 + (c_r - r0) * m_keep
                c_g = g0 + (c_g - g0) * m_keep
                c_b = b0 + (c_b - b0) * m_keep

            # 5. vignette
            ddy, ddx = y - cy, x - cx
            falloff = 1.0 - vignette * (ddy * ddy + ddx * ddx) * inv_r2

            # 6. grain, strength following the output luma
            y_out = (0.299 * c_r + 0.587 * c_g + 0.114 * c_b) * falloff
            amount = _curve(grain_curve, y_out) * (1.0 - (1.0 - face_grain) * m_face)
            ty_, tx_ = (y + grain_dy) & tmask, (x + grain_dx) & tmask
            n_y = grain[ty_, tx_, 0] * amount
            n_cb = grain[ty_, tx_, 1] * amount * grain_chroma
            n_cr = grain[ty_, tx_, 2] * amount * grain_chroma
            grain_rgb0 = n_y + 1.402 * n_cr
            grain_rgb1 = n_y - 0.344136 * n_cb - 0.714136 * n_cr
            grain_rgb2 = n_y + 1.772 * n_cb

            # 7. roll-off, dither, quantise
            d = _hash01(y, x, dither_seed) + _hash01(x, y, dither_seed + 1) - 1.0
            out[y, x, 0] = _quantise(c_r * falloff + grain_rgb0, knee, d)
            out[y, x, 1] = _quantise(c_g * falloff + grain_rgb1, knee, d)
            out[y, x, 2] = _quantise(c_b * falloff + grain_rgb2, knee, d)


def render(content: np.ndarray, plan: RenderPlan) -> np.ndarray:
    """Apply ``plan`` to ``content`` ((H, W, 3) uint8, already at output size) -> uint8."""
    out = np.empty_like(content)
    with _render_lock:
        _render(
            np.ascontiguousarray(content), plan.shaper, plan.lut, plan.coef_a, plan.coef_b,
            plan.base_curve,
            plan.detail_gain, plan.face_detail_gain, plan.face_mask, plan.keep_mask,
            plan.guard_hue, plan.guard_chroma, plan.guard_gain, plan.vignette,
            plan.grain, plan.grain_curve, plan.face_grain, plan.grain_chroma,
            plan.grain_offset[0], plan.grain_offset[1], plan.knee, plan.dither_seed, out,
        )  # fmt: skip
    return out
