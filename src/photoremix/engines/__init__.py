"""Remix engines behind one interface (see ``base.Engine``)."""

from photoremix.engines.base import Engine, EngineError, ImageReport, RemixOutput, RemixRequest

__all__ = ["Engine", "EngineError", "ImageReport", "RemixOutput", "RemixRequest", "get_engine"]


def get_engine(name: str) -> Engine:
    """Return a ready engine by name. Only ``classic`` exists so far."""
    if name == "classic":
        from photoremix.engines.classic import ClassicEngine

        return ClassicEngine()
    raise EngineError(f"unknown engine {name!r}; available: classic")
