"""Purposeful variations for ``num_output_images`` > 1.

Output 0 is always the faithful transfer (the one the quality targets are measured on).
The others move along axes a person choosing between outputs cares about: how strong the
look is, how much local contrast and grain, how warm or bright the mood. Each output's
seed (request seed + index) drives its grain pattern and dither, so a request repeated
with the same seed reproduces every output bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variation:
    description: str
    strength: float = 1.0  # multiplies the whole look transfer
    detail: float = 1.0  # multiplies the tone stage's detail-gain deviation from 1
    grain: float = 1.0
    vignette: float = 1.0
    warmth: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0


VARIATIONS: tuple[Variation, ...] = (
    Variation("faithful: the reference's look as measured"),
    Variation(
        "bolder: 25% stronger look, more local contrast, grain and vignette",
        strength=1.25, detail=1.5, grain=1.4, vignette=1.4, contrast=0.2,
    ),
    Variation(
        "gentler: 40% weaker look, softer contrast, less grain; closer to the original",
        strength=0.6, detail=0.5, grain=0.5, vignette=0.5, contrast=-0.15,
    ),
    Variation(
        "alternate mood: the reference's look in a warmer, brighter key",
        strength=1.0, warmth=0.35, brightness=0.2, vignette=0.6,
    ),
)  # fmt: skip


def variation_for(index: int) -> Variation:
    """The variation of output ``index``; beyond the table, the table repeats (new seeds)."""
    return VARIATIONS[index % len(VARIATIONS)]
