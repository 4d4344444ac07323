"""output_size_2k: the one "2K" output-size rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from photoremix.imaging import output_size_2k
from photoremix.imaging.sizing import AREA_TOLERANCE, SIDE_MULTIPLE, TARGET_AREA

# Worked out by enumerating every (w, h), both multiples of 16, with w·h within ±2% of
# 2048², and taking the smallest aspect error, then the area closest to 2048².
EXPECTED_SIZES = [
    # (input width, input height), (output width, output height)
    ((1, 1), (2048, 2048)),  # 2032² and 2064² are exact too, but further from 2048²
    ((4, 3), (2368, 1776)),  # the only exact 4:3 in the window (64k x 48k, k = 37)
    ((3, 4), (1776, 2368)),
    ((3, 2), (2496, 1664)),  # exact; area 0.990
    ((2, 3), (1664, 2496)),
    ((16, 9), (2736, 1536)),  # no exact 16:9 fits; 1.78125 is 0.2% off
    ((9, 16), (1536, 2736)),
    ((2, 1), (2912, 1456)),  # exact; area 1.011 beats 2880 x 1440 at 0.989
    ((21, 9), (3136, 1344)),  # exact 7:3
    ((8, 1), (5760, 720)),  # exact; area 0.989
    ((1, 8), (720, 5760)),
    ((16, 1), (8192, 512)),
    ((1, 16), (512, 8192)),
    ((5, 4), (2304, 1840)),  # no exact 5:4 fits; 1.2522 is 0.17% off
    ((4032, 3024), (2368, 1776)),  # a 12 MP phone photo is 4:3
    ((1080, 1920), (1536, 2736)),  # a portrait video frame is 9:16
]


@pytest.mark.parametrize(("input_size", "expected"), EXPECTED_SIZES)
def test_known_aspect_ratios(input_size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert output_size_2k(*input_size) == expected


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-5, 10), (10, -1)])
def test_non_positive_sizes_are_rejected(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        output_size_2k(width, height)


sides = st.integers(min_value=1, max_value=100_000)


@st.composite
def sizes_up_to_8_to_1(draw: st.DrawFn) -> tuple[int, int]:
    short = draw(st.integers(min_value=1, max_value=12_500))
    long = draw(st.integers(min_value=short, max_value=8 * short))
    return (long, short) if draw(st.booleans()) else (short, long)


@given(width=sides, height=sides)
def test_every_result_obeys_the_rule(width: int, height: int) -> None:
    out_width, out_height = output_size_2k(width, height)
    assert out_width % SIDE_MULTIPLE == 0 and out_height % SIDE_MULTIPLE == 0
    assert out_width > 0 and out_height > 0
    assert abs(out_width * out_height / TARGET_AREA - 1) <= AREA_TOLERANCE
    # Portrait and landscape are mirror images of each other.
    assert output_size_2k(height, width) == (out_height, out_width)
    # Orientation never flips.
    if width > height:
        assert out_width >= out_height
    if width < height:
        assert out_width <= out_height


@given(size=sizes_up_to_8_to_1())
def test_aspect_ratio_is_kept_up_to_8_to_1(size: tuple[int, int]) -> None:
    width, height = size
    out_width, out_height = output_size_2k(width, height)
    assert abs((out_width / out_height) / (width / height) - 1) < 0.01
