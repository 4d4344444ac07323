"""The classic engine: CPU photographic look transfer without neural-network weights."""

from photoremix.engines.classic.engine import ClassicEngine

__all__ = ["ClassicEngine"]
