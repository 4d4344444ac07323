"""The one interface every remix engine implements.

Engines receive decoded pixels and return pixels plus a report. They know nothing about
HTTP, storage, billing or accounts: the service layer owns those.

Image convention everywhere in this package: ``np.ndarray`` of shape (H, W, 3), dtype
uint8, sRGB-encoded RGB (not BGR).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from photoremix.vision.faces import Face


@dataclass(frozen=True)
class IdentityImage:
    """A recognised person's photo, for engines that can look at one (gemini, qwen).

    name: how the prompt given to the engine names this person, e.g. "the person on the
        left" (``[[profile_id]]`` markers are replaced by it before the engine sees them).
    image: (H, W, 3) uint8 sRGB face crop (the profile picture).
    """

    name: str
    image: np.ndarray


@dataclass(frozen=True)
class RemixRequest:
    """Everything an engine needs for one remix call.

    content, reference: (H, W, 3) uint8 sRGB.
    faces: faces detected in ``content`` (content pixel coordinates), or None to let the
        engine detect them itself. An empty tuple means "detected, none found".
    output_size: (width, height) of every output image; see ``imaging.sizing.output_size_2k``.
    seed: base seed; output ``i`` uses ``seed + i``.
    style_strength: 0..1 overall strength of the look transfer; None = engine default.
    variation_offset: render variations ``offset .. offset + num_outputs - 1`` (with seeds
        ``seed + offset + i``), so one variation can be rendered again on its own.
    identity_protection: 0..1 extra protection of the faces on top of the engine's normal
        guard (1 = change faces as little as the engine can); raised when a re-render is
        needed because a face drifted too far from the input.
    identities: photos of the profiles recognised in ``content``, named as in ``prompt``.
    """

    content: np.ndarray
    reference: np.ndarray
    output_size: tuple[int, int]
    prompt: str | None = None
    faces: tuple[Face, ...] | None = None
    num_outputs: int = 1
    seed: int = 0
    style_strength: float | None = None
    variation_offset: int = 0
    identity_protection: float = 0.0
    identities: tuple[IdentityImage, ...] = ()


@dataclass
class ImageReport:
    """What an engine did for one output image (serialisable with ``dataclasses.asdict``)."""

    engine: str
    seed: int
    variation: int
    variation_description: str
    applied: dict[str, Any] = field(default_factory=dict)
    unhandled_instructions: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class RemixOutput:
    image: np.ndarray  # (H, W, 3) uint8 sRGB, H, W == request.output_size[::-1]
    report: ImageReport


# Called after each finished output with (outputs_done, outputs_total).
ProgressCallback = Callable[[int, int], None]


class Engine(Protocol):
    name: str

    def remix(
        self, request: RemixRequest, progress: ProgressCallback | None = None
    ) -> list[RemixOutput]:
        """Render ``request.num_outputs`` images. Raises ``EngineError`` on failure."""
        ...


class EngineError(RuntimeError):
    """An engine could not produce output; the message is safe to show to a user."""


class ContentModerationError(EngineError):
    """The engine's provider refused the content (blocked prompt or unsafe output).

    reason: the provider's own reason code, e.g. "IMAGE_SAFETY". The API answers 400 with
    error type ``CONTENT_MODERATION``; never retried.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[ContentModerationError], tuple[str, str]]:
        # Survive pickling (process pools): the default would call __init__(message).
        return type(self), (self.reason, str(self))
