"""Prompt directives for the classic engine: a small documented vocabulary, no language model.

The classic engine understands the phrasings listed in docs/directives.md. Every clause it
does not understand comes back verbatim in ``Directives.unhandled`` so the report can say
so; nothing is dropped silently.

How a prompt is read:

1. ``[[profile]]`` markers are removed: they pick profiles, they are not instructions.
2. The prompt is split into clauses on ``. ; , ! ?``, newlines and the words "and", "but",
   "then" (not inside "black and white").
3. Each clause is normalised: lower case, British spellings to American ("colour" ->
   "color"), "n't" to " not", punctuation to spaces.
4. "Keep" targets (background, colours, skin tones, lighting) count when the clause also
   says keep/preserve/leave/untouched/original/"don't change" etc., in any order. A clause
   that names only targets ("..., the colours and the lighting") inherits the previous
   clause's keep.
5. Phrases from ``_PHRASES`` are matched in table order; a matched phrase is blanked so a
   later, more general phrase cannot claim its words ("softer contrast" is contrast, not a
   subtle style).
6. The words between the previous match and a phrase modify it: negation ("not", "no",
   "without"), direction ("less", "reduce" / "more", "add") and intensity ("much", "very" /
   "slightly", "a bit").
7. Effects apply in prompt order, so for contradictions ("warmer ... cooler") the later
   one wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

Value = bool | float

# Strength is a multiplier on the engine's style strength; intensifiers square it, softeners
# take its square root; the result is clamped to STRENGTH_RANGE.
STRONGER = 1.35
SUBTLER = 0.6
STRENGTH_RANGE = (0.3, 1.6)
# One step of warmth/brightness/contrast (range -1..1); "much" doubles it, "slightly" halves it.
ADJUSTMENT_STEP = 0.5

_SWITCHES = frozenset(
    {"keep_background", "keep_colours", "keep_skin_tones", "keep_lighting", "monochrome", "grain"}
)


@dataclass(frozen=True)
class MatchedDirective:
    """One clause and the settings it produced, in the order applied.

    clause: the clause as written (profile markers removed).
    settings: (field name of ``Directives``, value) pairs, e.g. ``(("warmth", 0.5),)``.
    """

    clause: str
    settings: tuple[tuple[str, Value], ...]


@dataclass(frozen=True)
class Directives:
    """What a prompt asks of the classic engine. Defaults mean "not mentioned".

    keep_*: keep that aspect of the content photo instead of taking it from the reference.
    strength: multiplier on the style strength, in STRENGTH_RANGE (1.0 = as configured).
    monochrome: render black and white.
    grain: True add film grain, False keep the result clean, None engine default.
    warmth, brightness, contrast: -1..1 adjustments (0 = none; +: warmer/brighter/more).
    matched: the clauses understood, with what each set.
    unhandled: every clause not understood, verbatim, in prompt order.
    """

    keep_background: bool = False
    keep_colours: bool = False
    keep_skin_tones: bool = False
    keep_lighting: bool = False
    strength: float = 1.0
    monochrome: bool = False
    grain: bool | None = None
    warmth: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    matched: tuple[MatchedDirective, ...] = ()
    unhandled: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Phrase:
    """Words (regex alternatives over normalised text) and the fields they set.

    Effect units: True/False for switches; for strength and adjustments the sign (and
    weight) of the change, or 0 when the phrase is a noun ("contrast", "warmth") whose
    direction comes from the words before it ("more", "reduce").
    """

    pattern: re.Pattern[str]
    effects: tuple[tuple[str, Value], ...]


def _phrase(words: str, **effects: Value) -> _Phrase:
    return _Phrase(re.compile(rf"\b(?:{words})\b"), tuple(effects.items()))


# Order matters: earlier phrases claim their words first. Specific multi-word phrases come
# before the single words they contain.
_PHRASES: tuple[_Phrase, ...] = (
    # Contrast.
    _phrase(
        "(?:high|higher|strong|stronger|hard|harder|bold|bolder|deep|deeper|crisp|crisper)"
        " contrast|contrasty|punchy|punchier|punch|pop|poppy|(?:deep|deeper|rich|richer) blacks",
        contrast=1,
    ),
    _phrase(
        "(?:low|lower|soft|softer|gentle|gentler|subtle|subtler|weak|weaker|reduced) contrast"
        "|flat|flatter|flatten|faded|fade|matte|washed out",
        contrast=-1,
    ),
    _phrase("contrast", contrast=0),
    # Brightness.
    _phrase("moody", brightness=-1, contrast=0.5),
    _phrase("bright|brighter|brighten|lighter|lighten|airy|airier|high key", brightness=1),
    _phrase("dark|darker|darken|dim|dimmer|low key|gloomy", brightness=-1),
    _phrase("brightness|exposure", brightness=0),
    # Warmth.
    _phrase("warm(?: it)? up|warm|warmer|golden(?: hour)?|amber|sunny|sunnier|cozy", warmth=1),
    _phrase(
        "cool(?: it)? down|cool|cooler|cold|colder|icy|icier|bluer|bluish|blueish|blue tones?",
        warmth=-1,
    ),
    _phrase("warmth", warmth=0),
    # Black and white.
    _phrase(
        "black and white|grayscale|gray scale|monochrome|monochromatic|mono|noir", monochrome=True
    ),
    # Grain.
    _phrase("(?:grain|noise) free|grainless|noiseless|clean|cleaner|denoise|denoised", grain=False),
    _phrase("film grain|grainy|grain|noisy|noise", grain=True),
    # Style strength.
    _phrase(
        "light touch|soft(?:er)? (?:look|style|effect|feel|finish)|subtle|subtler|gentle|gentler"
        "|understated|restrained|delicate|mild|milder|toned down|tone it down",
        strength=-1,
    ),
    _phrase(
        "stronger|strong|intense|intensify|bold|bolder|dramatic|heavier|heavy|exaggerated"
        "|over the top",
        strength=1,
    ),
    _phrase("stylized|stylization|style|effect|strength|intensity", strength=0),
)

# A clause with no other directive that says only "slightly" etc. means a subtler style.
_STANDALONE_SOFTENER = re.compile(
    r"\b(?:slightly|a bit|a little|a tad|somewhat|mildly|lightly|barely|subtly|gently)\b"
)

# "Keep" targets: what may be kept, and the words that say "keep it".
_KEEP_TARGETS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (field, re.compile(rf"\b(?:{words})\b"))
    for field, words in (
        ("keep_skin_tones", "skin(?: tones?| colors?)?|skintones?|complexion|flesh tones?"),
        (
            "keep_background",
            "background|backdrop|bg|surroundings|scenery|setting behind"
            "|scene behind(?: (?:me|us|them|him|her|it|the \\w+))?"
            "|behind (?:me|us|them|him|her|the subject|the person|the people)",
        ),
        ("keep_colours", "colors?|coloring|color palette|color scheme|palette|hues?"),
        (
            "keep_lighting",
            "lighting|illumination|exposure|(?:the|natural|ambient|original|existing) lights?",
        ),
    )
)
_KEEP = re.compile(
    r"\b(?:keep|keeping|kept|preserve|preserving|preserved|retain|retaining|maintain"
    r"|maintaining|leave|leaving|protect|as is|as it is|as they are|unchanged|untouched"
    r"|unaltered|intact|original|alone|(?:stay|stays|remain|remains) the same"
    r"|same as (?:before|the original|the photo|in the photo))\b"
    r"|\b(?:not|never|without|no)\s+(?:\w+\s+)?(?:change|changes|changing|changed|alter"
    r"|altering|touch|touching|modify|modifying|restyle|restyling|edit|editing|recolor"
    r"|recoloring|affect|affecting|stylize|stylizing|mess)\b"
)
_DO_NOT_KEEP = re.compile(
    r"\b(?:not|never|no need to|stop)\s+(?:\w+\s+)?(?:keep|keeping|preserve|preserving|retain"
    r"|maintain|leave)\b"
)
# Skin is "kept" by these too: "natural skin tones".
_KEEP_SKIN = re.compile(r"\b(?:natural|realistic|true to life|real)\b")

_NEGATIONS = frozenset(
    {"not", "no", "never", "without", "avoid", "remove", "removing", "skip", "drop", "lose"}
    | {"eliminate", "nor", "none", "rid"}
)
_UP = frozenset(
    {"more", "increase", "increased", "boost", "boosted", "raise", "higher", "add", "extra"}
    | {"up", "enhance", "enhanced", "heighten", "some", "with", "hint", "touch", "lot"}
)
_DOWN = frozenset(
    {"less", "reduce", "reduced", "lower", "decrease", "decreased", "lessen", "down", "fewer"}
    | {"cut", "minimize", "minimise"}
)
_INTENSIFIERS = frozenset(
    {"much", "very", "way", "far", "lot", "extremely", "really", "super", "significantly"}
    | {"considerably", "dramatically", "heavily", "strongly"}
)
_SOFTENERS = frozenset(
    {"slightly", "bit", "tad", "touch", "somewhat", "mildly", "subtly", "gently", "barely"}
    | {"marginally", "hint"}
)

_MARKER = re.compile(r"\s*\[\[[^\[\]]*\]\]\s*")
_BLACK_AND_WHITE = re.compile(
    r"\bblack\s*(?:-\s*)?(?:and|&|n|'n'?)\s*(?:-\s*)?white\b|\bb\s*[&/]\s*w\b", re.IGNORECASE
)
_SEPARATOR = re.compile(r"[.;,!?\n\r]+|\b(?:and|but|then)\b", re.IGNORECASE)
# British -> American, so the tables list one spelling.
_SPELLINGS = (
    (re.compile(r"colour"), "color"),
    (re.compile(r"\bgrey"), "gray"),
    (re.compile(r"stylis(e|ed|es|ing|ation)\b"), r"styliz\1"),
    (re.compile(r"\bcosy\b"), "cozy"),
)
# Stems whose "n't" may be written without the apostrophe ("dont"); "cant"/"wont" are words.
_NOT_STEMS = frozenset(
    {"do", "does", "did", "is", "are", "was", "were", "should", "would", "could", "must"}
    | {"need", "has", "have", "had"}
)


def parse_directives(prompt: str | None) -> Directives:
    """Read the directives in ``prompt``; None or "" gives the defaults."""
    if prompt is None:
        return Directives()
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string or None, got {type(prompt).__name__}")

    values: dict[str, Value] = {}
    matched: list[MatchedDirective] = []
    unhandled: list[str] = []
    previous_keep: bool | None = None  # what the previous clause did to its keep targets
    for clause in split_clauses(prompt):
        text = normalise(clause)
        settings, bare_targets = _clause_settings(text)
        if not settings and bare_targets and previous_keep is not None:
            # "Keep the background, the colours and the lighting": the verb is in clause 1.
            settings = [(field, previous_keep) for field in bare_targets]
        if not settings and _STANDALONE_SOFTENER.search(text):
            settings = [("strength", SUBTLER)]
        keeps = [value for field, value in settings if field.startswith("keep_")]
        previous_keep = bool(keeps[-1]) if keeps else None
        if settings:
            matched.append(MatchedDirective(clause, tuple(settings)))
            values.update(settings)  # later clauses override earlier ones
        else:
            unhandled.append(clause)
    return replace(Directives(), **values, matched=tuple(matched), unhandled=tuple(unhandled))


def split_clauses(prompt: str) -> list[str]:
    """Clauses of ``prompt`` as written, markers removed, empty ones dropped."""
    text = _MARKER.sub(" ", prompt)
    protected = [m.span() for m in _BLACK_AND_WHITE.finditer(text)]
    pieces: list[str] = []
    start = 0
    for separator in _SEPARATOR.finditer(text):
        if any(lo <= separator.start() < hi for lo, hi in protected):
            continue
        pieces.append(text[start : separator.start()])
        start = separator.end()
    pieces.append(text[start:])
    return [piece.strip() for piece in pieces if normalise(piece)]


def normalise(text: str) -> str:
    """Lower case, American spelling, "n't" -> " not", words separated by single spaces."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")  # curly apostrophes
    text = _BLACK_AND_WHITE.sub(" black and white ", text)
    text = text.replace("&", " and ")
    for british, american in _SPELLINGS:
        text = british.sub(american, text)
    text = re.sub(r"\bcannot\b", "can not", text)
    text = re.sub(r"\b(\w+)n'?t\b", _expand_not, text)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def _expand_not(match: re.Match[str]) -> str:
    # "don't"/"dont" -> "do not"; leave words that merely end in "nt" ("want", "paint").
    stem = match.group(1)
    if "'" in match.group(0) or stem in _NOT_STEMS:
        return f"{stem} not"
    return match.group(0)


def _clause_settings(text: str) -> tuple[list[tuple[str, Value]], list[str]]:
    """Settings from one normalised clause, in text order, and the keep targets it names
    without a keep verb (for carrying the previous clause's verb over)."""
    # (start, end, field, unit or resolved value, resolved?) of every match.
    found: list[tuple[int, int, str, Value, bool]] = []
    work = text  # words claimed by a directive are blanked here, keeping positions
    target_work = text  # the same for keep targets among themselves ("skin colors")

    keep_value: bool | None = None
    if _DO_NOT_KEEP.search(text):
        keep_value = False
    elif _KEEP.search(text):
        keep_value = True
    bare_targets: list[str] = []
    for field, pattern in _KEEP_TARGETS:
        value = keep_value
        if value is None and field == "keep_skin_tones" and _KEEP_SKIN.search(text):
            value = True
        for m in pattern.finditer(target_work):
            target_work = _blank(target_work, m)
            if value is None:
                # Not claimed: "increase exposure" is brightness, not a lighting target.
                bare_targets.append(field)
                continue
            found.append((m.start(), m.end(), field, value, True))
            work = _blank(work, m)

    for phrase in _PHRASES:
        for m in phrase.pattern.finditer(work):
            for field, unit in phrase.effects:
                found.append((m.start(), m.end(), field, unit, False))
            work = _blank(work, m)

    settings: list[tuple[str, Value]] = []
    previous_end = 0
    for start, end, field, unit, resolved in sorted(found, key=lambda f: f[0]):
        words = text[previous_end:start].split()
        value = unit if resolved else _resolve(field, unit, words)
        if value is not None:
            settings.append((field, value))
        previous_end = max(previous_end, end)
    return settings, list(dict.fromkeys(bare_targets))


def _blank(text: str, match: re.Match[str]) -> str:
    return text[: match.start()] + " " * (match.end() - match.start()) + text[match.end() :]


def _resolve(field: str, unit: Value, words: list[str]) -> Value | None:
    """The value a phrase sets given the ``words`` before it; None when it sets nothing."""
    negated = any(word in _NEGATIONS for word in words)
    direction = next(
        (1 if word in _UP else -1 for word in reversed(words) if word in _UP | _DOWN), 0
    )
    if field in _SWITCHES:
        # "no grain", "without grain", "less noise": the switch flips.
        return bool(unit) != (negated or direction < 0)
    if negated:
        # "not too warm", "no more contrast": a limit, not an instruction.
        return None
    sign = float(unit) if unit else float(direction)
    if unit and direction < 0:
        sign = -sign  # "less warm"
    if sign == 0:
        return None  # a bare noun: "contrast"
    intensity = 1.0
    if any(word in _INTENSIFIERS for word in words):
        intensity = 2.0
    elif any(word in _SOFTENERS for word in words):
        intensity = 0.5
    if field == "strength":
        multiplier = (STRONGER if sign > 0 else SUBTLER) ** intensity
        return round(min(max(multiplier, STRENGTH_RANGE[0]), STRENGTH_RANGE[1]), 3)
    return round(min(max(ADJUSTMENT_STEP * sign * intensity, -1.0), 1.0), 3)
