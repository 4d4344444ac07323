"""Persistence: SQLAlchemy models, engines and Alembic migrations (no business rules)."""

from photoremix.persistence.database import (
    DatabaseError,
    make_engine,
    make_session_factory,
    migrate,
)
from photoremix.persistence.models import Account, ApiKey, Base, LedgerEntry, Money

__all__ = [
    "Account",
    "ApiKey",
    "Base",
    "DatabaseError",
    "LedgerEntry",
    "Money",
    "make_engine",
    "make_session_factory",
    "migrate",
]
