"""The HTTP service: a thin FastAPI shell over ``photoremix.services``."""

from photoremix.api.app import create_app

__all__ = ["create_app"]
