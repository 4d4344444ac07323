"""Remix engines behind one interface (see ``base.Engine``).

``classic`` (CPU, no weights) is always available; ``gemini`` (google-genai, the operator's
key) and ``qwen`` (diffusers, local weights, the ``qwen`` extra) are imported only when used.
"""

import importlib
from typing import Final

from photoremix.engines.base import (
    ContentModerationError,
    Engine,
    EngineError,
    IdentityImage,
    ImageReport,
    RemixOutput,
    RemixRequest,
)
from photoremix.settings import Settings, get_settings

__all__ = [
    "ENGINE_NAMES",
    "ContentModerationError",
    "Engine",
    "EngineError",
    "IdentityImage",
    "ImageReport",
    "RemixOutput",
    "RemixRequest",
    "engine_problem",
    "get_engine",
]


ENGINE_NAMES: Final = ("classic", "gemini", "qwen")


def engine_problem(name: str, settings: Settings | None = None) -> str | None:
    """Why engine ``name`` cannot run with ``settings``: a sentence, or None when it can.

    Cheap: checks packages and settings without loading models or calling anyone.
    """
    if name not in ENGINE_NAMES:
        return f"unknown engine {name!r}; known engines: {', '.join(ENGINE_NAMES)}"
    if name == "classic":
        return None
    settings = settings or get_settings()
    try:
        module = importlib.import_module(f"photoremix.engines.{name}")
    except ImportError as error:  # engine modules import heavy packages lazily; belt and braces
        return f"the {name} engine cannot be imported ({error})"
    return module.problem(settings)  # type: ignore[no-any-return]


def get_engine(name: str, settings: Settings | None = None) -> Engine:
    """A ready engine by name (qwen loads its weights here). Raises EngineError naming what
    is missing when the engine cannot run."""
    problem = engine_problem(name, settings)
    if problem is not None:
        raise EngineError(f"the {name} engine cannot start: {problem}")
    if name == "classic":
        from photoremix.engines.classic import ClassicEngine

        return ClassicEngine()
    settings = settings or get_settings()
    module = importlib.import_module(f"photoremix.engines.{name}")
    engine_class = {"gemini": "GeminiEngine", "qwen": "QwenEngine"}[name]
    return getattr(module, engine_class)(settings)  # type: ignore[no-any-return]
