"""Behaviour of engines.classic.directives.parse_directives (vocabulary in docs/directives.md)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from photoremix.engines.classic.directives import (
    ADJUSTMENT_STEP,
    STRENGTH_RANGE,
    STRONGER,
    SUBTLER,
    Directives,
    parse_directives,
    split_clauses,
)

STEP = ADJUSTMENT_STEP
SETTINGS = [
    f.name for f in dataclasses.fields(Directives) if f.name not in {"matched", "unhandled"}
]

# (prompt, settings that differ from the defaults, clauses expected in `unhandled`)
CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    # Keep the background: word order, synonyms, negated change verbs.
    ("keep the background original", {"keep_background": True}, ()),
    ("keep the original background", {"keep_background": True}, ()),
    ("background: keep as is", {"keep_background": True}, ()),
    ("don't change the background", {"keep_background": True}, ()),
    ("leave the background untouched", {"keep_background": True}, ()),
    ("Do NOT alter the Backdrop!", {"keep_background": True}, ()),
    ("preserve the scene behind me", {"keep_background": True}, ()),
    ("the background should stay the same", {"keep_background": True}, ()),
    ("no changes to the surroundings", {"keep_background": True}, ()),
    ("don't keep the background", {}, ()),
    # Other keeps: colours, skin, lighting, with British/American spellings.
    ("keep the colours", {"keep_colours": True}, ()),
    ("preserve the original color palette", {"keep_colours": True}, ()),
    ("keep skin tones", {"keep_skin_tones": True}, ()),
    ("Leave the complexion alone", {"keep_skin_tones": True}, ()),
    ("natural skin tones please", {"keep_skin_tones": True}, ()),
    ("keep skin colour", {"keep_skin_tones": True}, ()),
    ("don't recolour the skin", {"keep_skin_tones": True}, ()),
    ("keep the lighting", {"keep_lighting": True}, ()),
    ("preserve the illumination", {"keep_lighting": True}, ()),
    ("keep the original light", {"keep_lighting": True}, ()),
    # A keep verb carries over clauses that only name targets.
    (
        "Keep the background, the colours and the lighting",
        {"keep_background": True, "keep_colours": True, "keep_lighting": True},
        (),
    ),
    # Strength.
    ("stronger", {"strength": STRONGER}, ()),
    ("More stylised", {"strength": STRONGER}, ()),
    ("more stylized", {"strength": STRONGER}, ()),
    ("intense", {"strength": STRONGER}, ()),
    ("bold", {"strength": STRONGER}, ()),
    ("much stronger", {"strength": STRENGTH_RANGE[1]}, ()),
    ("subtle", {"strength": SUBTLER}, ()),
    ("gentle", {"strength": SUBTLER}, ()),
    ("a light touch", {"strength": SUBTLER}, ()),
    ("soft look", {"strength": SUBTLER}, ()),
    ("only slightly", {"strength": SUBTLER}, ()),
    ("less intense", {"strength": SUBTLER}, ()),
    ("very subtle", {"strength": SUBTLER**2}, ()),
    # Black and white, never split at its "and".
    ("black and white", {"monochrome": True}, ()),
    ("Black-and-White", {"monochrome": True}, ()),
    ("B&W", {"monochrome": True}, ()),
    ("greyscale", {"monochrome": True}, ()),
    ("grayscale", {"monochrome": True}, ()),
    ("monochrome", {"monochrome": True}, ()),
    ("film noir", {"monochrome": True}, ()),
    # Grain.
    ("no grain", {"grain": False}, ()),
    ("without grain", {"grain": False}, ()),
    ("grain-free", {"grain": False}, ()),
    ("clean and noise-free", {"grain": False}, ()),
    ("don't add grain", {"grain": False}, ()),
    ("dont add grain", {"grain": False}, ()),
    ("add grain", {"grain": True}, ()),
    ("film grain", {"grain": True}, ()),
    ("grainy", {"grain": True}, ()),
    # Warmth, brightness, contrast and their intensity.
    ("warmer", {"warmth": STEP}, ()),
    ("warm it up", {"warmth": STEP}, ()),
    ("golden", {"warmth": STEP}, ()),
    ("much warmer", {"warmth": 2 * STEP}, ()),
    ("a bit warmer", {"warmth": STEP / 2}, ()),
    ("less warm", {"warmth": -STEP}, ()),
    ("cool tones", {"warmth": -STEP}, ()),
    ("bluer", {"warmth": -STEP}, ()),
    ("brighter", {"brightness": STEP}, ()),
    ("lighter", {"brightness": STEP}, ()),
    ("increase exposure", {"brightness": STEP}, ()),
    ("dim", {"brightness": -STEP}, ()),
    ("darker", {"brightness": -STEP}, ()),
    ("moody", {"brightness": -STEP, "contrast": STEP / 2}, ()),
    ("more contrast", {"contrast": STEP}, ()),
    ("punchier", {"contrast": STEP}, ()),
    ("stronger contrast", {"contrast": STEP}, ()),
    ("flatter", {"contrast": -STEP}, ()),
    ("softer contrast", {"contrast": -STEP}, ()),
    ("reduce the contrast", {"contrast": -STEP}, ()),
    # Several directives in one prompt, mixed case and punctuation.
    (
        "KEEP THE BACKGROUND!!! Warmer; b&w, and add film grain",
        {"keep_background": True, "warmth": STEP, "monochrome": True, "grain": True},
        (),
    ),
    (
        "moody black and white with film grain",
        {"brightness": -STEP, "contrast": STEP / 2, "monochrome": True, "grain": True},
        (),
    ),
    ("make it warmer\nthen brighter", {"warmth": STEP, "brightness": STEP}, ()),
    # Contradictions: the later one wins.
    ("warmer. cooler", {"warmth": -STEP}, ()),
    ("cooler, but warmer", {"warmth": STEP}, ()),
    ("stronger, then subtle", {"strength": SUBTLER}, ()),
    ("add grain. no grain", {"grain": False}, ()),
    # Profile markers are not instructions.
    ("[[alice]]", {}, ()),
    ("[[alice]] keep skin tones natural", {"keep_skin_tones": True}, ()),
    ("make [[bob.v2]] warmer, [[carol]]", {"warmth": STEP}, ()),
    # Not understood: reported verbatim, never dropped.
    ("asdf qwerty", {}, ("asdf qwerty",)),
    ("Add a unicorn; warmer", {"warmth": STEP}, ("Add a unicorn",)),
    ("not too warm", {}, ("not too warm",)),
    ("brighter, but NOT too warm!", {"brightness": STEP}, ("NOT too warm",)),
    ("desaturate it and make it pop", {"contrast": STEP}, ("desaturate it",)),
    ("contrast", {}, ("contrast",)),
]


@pytest.mark.parametrize(("prompt", "expected", "unhandled"), CASES, ids=[c[0] for c in CASES])
def test_phrasings(prompt: str, expected: dict[str, Any], unhandled: tuple[str, ...]) -> None:
    directives = parse_directives(prompt)
    wanted = dataclasses.replace(Directives(), **expected)
    for name in SETTINGS:
        got, want = getattr(directives, name), getattr(wanted, name)
        if isinstance(want, float):
            assert math.isclose(got, want, abs_tol=1e-3), (name, got, want)
        else:
            assert got == want, (name, got, want)
    assert directives.unhandled == unhandled


@pytest.mark.parametrize("prompt", [None, "", "   ", "...", "\n;,"])
def test_empty_prompt_gives_defaults(prompt: str | None) -> None:
    assert parse_directives(prompt) == Directives()


def test_black_and_white_is_not_split_but_other_ands_are() -> None:
    clauses = split_clauses("black and white and warmer, black & white but cooler")
    assert clauses == ["black and white", "warmer", "black & white", "cooler"]


def test_matched_reports_each_clause_and_what_it_set() -> None:
    directives = parse_directives("Keep the background. Much warmer, then cooler")
    assert [m.clause for m in directives.matched] == [
        "Keep the background",
        "Much warmer",
        "cooler",
    ]
    assert directives.matched[0].settings == (("keep_background", True),)
    assert directives.matched[1].settings == (("warmth", 2 * STEP),)
    assert directives.matched[2].settings == (("warmth", -STEP),)
    assert directives.warmth == -STEP


def test_strength_stays_within_its_range() -> None:
    for prompt in ("much much stronger", "extremely intense", "very very subtle", "very gentle"):
        strength = parse_directives(prompt).strength
        assert STRENGTH_RANGE[0] <= strength <= STRENGTH_RANGE[1]


def test_result_is_immutable() -> None:
    directives = parse_directives("warmer")
    with pytest.raises(dataclasses.FrozenInstanceError):
        directives.warmth = 1.0  # type: ignore[misc]


def test_non_string_prompt_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="string"):
        parse_directives(42)  # type: ignore[arg-type]


# Prompts made of real vocabulary words, filler and noise, with separators between them.
_WORDS = st.sampled_from(
    [
        *("keep", "the", "background", "warmer", "not", "black", "and", "white", "grain"),
        *("please", "much", "subtle", "colours", "xyzzy", "contrast", "less", "then"),
        *("!", ",", ".", ";", "\n"),
    ]
)
_PROMPTS = st.lists(_WORDS | st.text(max_size=8), max_size=12).map(" ".join)


@given(_PROMPTS)
def test_every_clause_is_either_matched_or_unhandled_verbatim(prompt: str) -> None:
    directives = parse_directives(prompt)
    clauses = split_clauses(prompt)
    reported = [m.clause for m in directives.matched] + list(directives.unhandled)
    assert sorted(reported) == sorted(clauses)
    if "[[" not in prompt:
        for clause in directives.unhandled:
            assert clause in prompt


@given(_PROMPTS, st.from_regex(r"\[\[[a-z0-9._-]{1,10}\]\]", fullmatch=True))
def test_profile_markers_never_reach_the_report(prompt: str, marker: str) -> None:
    directives = parse_directives(f"{marker} {prompt} {marker}")
    reported = [m.clause for m in directives.matched] + list(directives.unhandled)
    assert not any(marker in clause for clause in reported)
    assert parse_directives(f"{marker} {prompt}").unhandled == parse_directives(prompt).unhandled
