"""Radial vignette: V(r) = 1 - v * r^2, r = 0 at the centre and 1 at the corners.

Estimated from ring medians of luma (a robust, 1-D version of the radial-falloff
estimators in the literature). Scene content confounds any single-image estimate, so only
the *difference* between reference and content is transferred, and it is capped.
"""

from __future__ import annotations

import numpy as np

from photoremix.engines.classic.tone import luma

RINGS = 8
MAX_STRENGTH = 0.25


def _ring_falloff(y: np.ndarray, r2: np.ndarray) -> float:
    ring = np.minimum((np.sqrt(r2) * RINGS).astype(int), RINGS - 1)
    medians = np.array(
        [np.median(y[ring == i]) if np.any(ring == i) else np.nan for i in range(RINGS)]
    )
    radii2 = ((np.arange(RINGS) + 0.5) / RINGS) ** 2
    known = ~np.isnan(medians)
    if not known[0] or medians[0] < 0.05:
        return 0.0
    falloff = 1 - medians[known] / medians[0]
    return float(np.sum(falloff * radii2[known]) / np.sum(radii2[known] ** 2))


def estimate_vignette(rgb: np.ndarray) -> float:
    """Falloff strength v >= 0 of an (H, W, 3) float image in [0, 1] (a thumbnail).

    Fitted separately in the four quadrants and the weakest taken: a lens vignette darkens
    every corner, while a dark foreground or a bright sky darkens only some.
    """
    y = luma(rgb)
    h, w = y.shape
    yy, xx = np.mgrid[0:h, 0:w]
    dy, dx = yy - (h - 1) / 2, xx - (w - 1) / 2
    r2 = (dy**2 + dx**2) / (((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2)
    quadrants = [
        (dy < 0) & (dx < 0),
        (dy < 0) & (dx >= 0),
        (dy >= 0) & (dx < 0),
        (dy >= 0) & (dx >= 0),
    ]
    v = min(_ring_falloff(y[q], r2[q]) for q in quadrants)
    return float(np.clip(v, 0.0, 1.0))


def falloff(shape: tuple[int, int], strength: float) -> np.ndarray:
    """(H, W) float32 factor 1 - strength * r^2 for an image of ``shape`` (as the renderer)."""
    h, w = shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (cy * cy + cx * cx)
    return (1 - strength * r2).astype(np.float32)


def vignette_to_apply(reference_v: float, content_v: float) -> float:
    return float(np.clip(reference_v - content_v, 0.0, MAX_STRENGTH))
