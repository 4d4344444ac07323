"""The "2K" output-size rule, in one place.

Every output image has the input's aspect ratio and about the pixel area of a 2048x2048
square, with both sides multiples of 16 (the block size image models and codecs like).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

TARGET_AREA: Final = 2048 * 2048
SIDE_MULTIPLE: Final = 16
# How far the output area may stray from TARGET_AREA, as a fraction of it.
AREA_TOLERANCE: Final = 0.02


def output_size_2k(width: int, height: int) -> tuple[int, int]:
    """The (width, height) of a "2K" output for an input of ``width`` x ``height`` pixels.

    Candidates are all (w, h), both multiples of SIDE_MULTIPLE, with w·h within
    ±AREA_TOLERANCE of TARGET_AREA. The result is the candidate with the smallest aspect
    error |log((w / h) / (width / height))|; ties go to the area closest to TARGET_AREA.
    1:1 → (2048, 2048); 16:9 → (2736, 1536). Portrait inputs give the exact transpose of
    the landscape answer. Ratios too extreme for 16 px rows get the most elongated
    candidate.

    Raises ValueError if either side is not positive.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"Image sides must be positive, got {width}x{height}.")
    if height > width:
        # Solve the landscape case only, so portrait results are exact transposes.
        transposed_width, transposed_height = output_size_2k(height, width)
        return transposed_height, transposed_width

    ratio = width / height  # >= 1 from here on
    min_area = TARGET_AREA * (1 - AREA_TOLERANCE)
    max_area = TARGET_AREA * (1 + AREA_TOLERANCE)
    step = SIDE_MULTIPLE

    # A landscape candidate has h <= w, so h <= sqrt(max_area): 129 heights in all. Each
    # allows a window of widths at least 0.04·TARGET_AREA / 2068 ≈ 81 px wide, so every
    # height has an allowed multiple of step.
    heights = np.arange(step, math.isqrt(int(max_area)) + 1, step, dtype=np.float64)
    # min/max_area are not integers, so these bounds never sit exactly on a multiple and
    # floor/ceil cannot be tipped by rounding.
    lowest = np.ceil(min_area / heights / step) * step
    highest = np.floor(max_area / heights / step) * step
    # For a fixed height the aspect error shrinks towards w = ratio·h and grows past it,
    # so the best allowed width is the multiple just below or just above ratio·h,
    # clipped into the window.
    ideal = ratio * heights
    below = np.clip(np.floor(ideal / step) * step, lowest, highest)
    above = np.clip(np.ceil(ideal / step) * step, lowest, highest)
    candidate_widths = np.concatenate([below, above])
    candidate_heights = np.concatenate([heights, heights])

    aspect_error = np.abs(np.log(candidate_widths / candidate_heights / ratio))
    area_error = np.abs(candidate_widths * candidate_heights - TARGET_AREA)
    best = np.lexsort((area_error, aspect_error))[0]  # the last key is the primary one
    return int(candidate_widths[best]), int(candidate_heights[best])
