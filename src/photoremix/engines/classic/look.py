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

from photoremix.engines.classic import colour, grain, tone, vignette
from photoremix.engines.classic.colour import Lut, lab_to_rgb, rgb_to_lab

ANALYSIS_LONG_SIDE = 512
COLOUR_SAMPLES = 20_000


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


def fit_look(content: np.ndarray, reference: np.ndarray) -> Look:
    """Fit the look of ``reference`` for ``content`` (both (H, W, 3) uint8, any size)."""
    content_small, reference_small = thumbnail(content), thumbnail(reference)
    tone_fit = tone.fit_tone(content_small, reference_small)
    toned = np.clip(tone.apply_tone(content_small, tone_fit), 0, 1)
    toned_samples = colour.sample_pixels(toned, COLOUR_SAMPLES, seed=1)
    source_lab = rgb_to_lab(toned_samples)
    target_lab = colour.sample_pixels(rgb_to_lab(reference_small), COLOUR_SAMPLES, seed=2)
    model = colour.fit_colour_model(source_lab, target_lab)
    mapped = lab_to_rgb(model.fitted.astype(np.float32))
    lut = colour.bake_lut(toned_samples, mapped, colour.fit_shaper(toned_samples))
    reference_grain = grain.estimate_grain(reference)
    added_grain = grain.residual_grain(reference_grain, grain.estimate_grain(content))
    added_vignette = vignette.vignette_to_apply(
        vignette.estimate_vignette(reference_small), vignette.estimate_vignette(content_small)
    )
    return Look(lut, tone_fit, added_grain, added_vignette, reference_grain.amount)
