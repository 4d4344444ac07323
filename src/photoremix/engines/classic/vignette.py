"""Radial vignette: V(r) = 1 - v * r^2, r = 0 at the centre and 1 at the corners.

Estimated from ring medians of luma (a robust, 1-D version of the radial-falloff
estimators in the literature). Scene content confounds any single-image estimate, so only
the *difference* between reference and content is transferred, and it is capped.
"""

from __future__ import annotations

import numpy as np

from photoremix.engines.classic.tone import luma

RINGS = 8
MAX_STRENGTH = 0.35


def estimate_vignette(rgb: np.ndarray) -> float:
    """Falloff strength v >= 0 of an (H, W, 3) float image in [0, 1] (a thumbnail)."""
    y = luma(rgb)
    h, w = y.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / (
        ((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2
    )
    ring = np.minimum((np.sqrt(r2) * RINGS).astype(int), RINGS - 1)
    medians = np.array([np.median(y[ring == i]) for i in range(RINGS)])
    radii2 = ((np.arange(RINGS) + 0.5) / RINGS) ** 2
    if medians[0] < 0.05:
        return 0.0
    falloff = 1 - medians / medians[0]
    v = float(np.sum(falloff * radii2) / np.sum(radii2**2))
    return float(np.clip(v, 0.0, 1.0))


def vignette_to_apply(reference_v: float, content_v: float) -> float:
    return float(np.clip(reference_v - content_v, 0.0, MAX_STRENGTH))
