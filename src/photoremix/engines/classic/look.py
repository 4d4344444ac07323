"""The reference's "look", fitted once per request on analysis thumbnails.

A ``Look`` holds everything measured (colour LUT, tone fit, grain, vignette) at full
strength. ``Look.lut_for`` then derives the LUT for one variation: scaled strength and the
prompt's colour directives (warmth, brightness, contrast, black and white, keep colours,
keep lighting), all applied to the LUT's grid nodes rather than to pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from photoremix.engines.classic import colour, grain, tone, vignette
from photoremix.engines.classic.colour import Lut, lab_to_rgb, rgb_to_lab
from photoremix.engines.classic.face_guard import GUARD, FaceLimits, apply_face_map, fit_face_map

ANALYSIS_LONG_SIDE = 512
COLOUR_SAMPLES = 20_000
# Face pixels sampled, and IDT iterations of the first colour map, to estimate where the
# guarded faces' colours will go (``fit_look``).
FACE_SAMPLES = 2_000
FACE_ESTIMATE_ITERATIONS = 4
# Share of the faces' pixel mass taken out of the reference's palette before the rest of
# the image is fitted to it (``complete_palette``).
COMPLETION = 1.0


def _weighted_pixels(weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count,) flat pixel indices drawn with probability proportional to ``weights``."""
    p = np.clip(weights, 0, None).ravel().astype(np.float64)
    return rng.choice(p.size, size=count, p=p / p.sum())


def complete_palette(target: np.ndarray, fixed: np.ndarray, share: float) -> np.ndarray:
    """The reference colours left for the rest of the image once pixels fixed elsewhere
    (the guarded faces) have taken their share.

    target: (N, 3) Lab samples of the reference; fixed: (M, 3) Lab colours of the fixed
    pixels; share: the fixed pixels' share of the image, 0..1. Removes the
    round(share * N) target samples nearest to any fixed colour (the reference mass an
    optimal transport would send to the fixed pixels; exact in 1-D when they lie beyond
    the reference's range), so what is left, matched by the rest of the image, and the
    fixed pixels together come close to the reference's distribution. Returns (K, 3).
    """
    remove = min(round(float(np.clip(share, 0.0, 1.0)) * len(target)), len(target) - 64)
    if remove <= 0 or not len(fixed):
        return target
    distance, _ = cKDTree(fixed).query(target, k=1)
    return target[np.argsort(distance, kind="stable")[remove:]]


def thumbnail(image: np.ndarray, long_side: int = ANALYSIS_LONG_SIDE) -> np.ndarray:
    """(H, W, 3) uint8, or float in [0, 1] -> float32 [0, 1] copy with the long side at
    most ``long_side``."""
    h, w = image.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(
            image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
        )
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


@dataclass
class Look:
    lut: Lut  # full strength
    tone: tone.ToneFit
    grain: grain.GrainModel  # grain to add (reference minus content's own, in quadrature)
    vignette: float  # falloff to add (reference minus content's own)
    reference_grain: float  # measured median grain std of the reference, for the report

    def lut_for(
        self,
        strength: float,
        *,
        warmth: float = 0.0,
        brightness: float = 0.0,
        contrast: float = 0.0,
        monochrome: bool = False,
        keep_colours: bool = False,
        keep_lighting: bool = False,
    ) -> Lut:
        nodes = self.lut.nodes
        values = nodes + strength * (self.lut.values - nodes)
        if not (warmth or brightness or contrast or monochrome or keep_colours or keep_lighting):
            return self.lut.with_values(values)
        lab = rgb_to_lab(np.clip(values, 0, 1))
        original = rgb_to_lab(nodes)
        if keep_colours:
            lab[..., 1:] = original[..., 1:]
        if keep_lighting:
            lab[..., 0] = original[..., 0]
        if contrast:
            lab[..., 0] = 50 + (lab[..., 0] - 50) * (1 + 0.35 * contrast)
        if brightness:
            # a gamma on L keeps black and white fixed and moves the mid-tones most
            lab[..., 0] = 100 * np.clip(lab[..., 0] / 100, 0, 1) ** (2 ** (-0.6 * brightness))
        if warmth:
            lab[..., 1] += 4 * warmth
            lab[..., 2] += 14 * warmth
        if monochrome:
            lab[..., 1:] = 0
        return self.lut.with_values(np.clip(lab_to_rgb(lab), -0.25, 1.25))


def fit_look(
    content: np.ndarray,
    reference: np.ndarray,
    face_mask: np.ndarray | None = None,
    face_limits: FaceLimits = GUARD,
) -> Look:
    """Fit the look of ``reference`` for ``content`` (both (H, W, 3) uint8, any size).

    face_mask: (h, w) float32 in [0, 1] at any resolution, the guarded faces
    (``face_guard``), or None. With faces, the colour map is fitted on the rest of the
    image, towards the reference's colours minus those the guarded faces will show
    (``complete_palette``): the whole output, faces included, then has the reference's
    palette, as far as the faces' limits allow.
    """
    content_small, reference_small = thumbnail(content), thumbnail(reference)
    tone_fit = tone.fit_tone(content_small, reference_small)
    # the map sees the content as the renderer does: dark, near-neutral chroma averaged
    calmed = colour.calm_dark_chroma(content_small)
    toned = np.clip(tone.apply_tone(calmed, tone_fit), 0, 1)
    toned_samples = colour.sample_pixels(toned, COLOUR_SAMPLES, seed=1)
    source_lab = rgb_to_lab(toned_samples)
    target_lab = colour.sample_pixels(rgb_to_lab(reference_small), COLOUR_SAMPLES, seed=2)
    has_faces = face_mask is not None and face_mask.max() > 0
    # With faces this first map only tells where the faces' colours would go: a rough one
    # will do, since the guard's limits decide in the end.
    iterations = FACE_ESTIMATE_ITERATIONS if has_faces else colour.IDT_ITERATIONS
    model = colour.fit_colour_model(source_lab, target_lab, iterations=iterations)
    if face_mask is not None and has_faces:
        size = (content_small.shape[1], content_small.shape[0])
        weights = cv2.resize(face_mask.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        rng = np.random.default_rng(3)
        faces = _weighted_pixels(weights, FACE_SAMPLES, rng)
        rest = _weighted_pixels(1.0 - weights, COLOUR_SAMPLES, rng)
        # Where the guard will put the faces: each keeps its own detail and follows the
        # look's mean change on it, within the limits (one map for all faces here).
        face_toned = toned.reshape(-1, 3)[faces]
        face_look = lab_to_rgb(model.apply(rgb_to_lab(face_toned)).astype(np.float32))
        face_original = content_small.reshape(-1, 3)[faces]
        params = fit_face_map(
            face_original, np.clip(face_look, 0, 1), np.ones(len(faces)), face_limits
        )
        face_output = rgb_to_lab(np.clip(apply_face_map(face_original, params), 0, 1))
        target_lab = complete_palette(target_lab, face_output, COMPLETION * float(weights.mean()))
        toned_samples = toned.reshape(-1, 3)[rest]
        source_lab = rgb_to_lab(toned_samples)
        model = colour.fit_colour_model(source_lab, target_lab)
    mapped = lab_to_rgb(model.fitted.astype(np.float32))
    lut = colour.bake_lut(toned_samples, mapped, colour.fit_shaper(toned_samples))
    reference_grain = grain.estimate_grain(reference)
    added_grain = grain.residual_grain(reference_grain, grain.estimate_grain(content))
    added_vignette = vignette.vignette_to_apply(
        vignette.estimate_vignette(reference_small), vignette.estimate_vignette(content_small)
    )
    return Look(lut, tone_fit, added_grain, added_vignette, reference_grain.amount)
