"""Tables of the accounts domain: accounts, API keys and the prepaid ledger.

Money is ``Decimal`` in Python and whole cents (a signed 64-bit integer) in the database.
Integer cents rather than ``NUMERIC(12, 2)`` because SQLite stores NUMERIC as a binary float,
so ``balance - 0.1 - 0.2`` computed inside SQLite (as the race-free conditional UPDATE of a
reservation is) would drift; integer arithmetic is exact on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

CENT: Final = Decimal("0.01")
LEDGER_KINDS: Final = ("credit", "reserve", "settle", "refund")


class Money(TypeDecorator[Decimal]):
    """``Decimal`` dollars with at most two decimal places, stored as integer cents."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            # float would silently round (0.1 + 0.2); int is fine but say Decimal everywhere.
            raise TypeError(f"money must be a Decimal, got {type(value).__name__}")
        cents = value / CENT
        if cents != cents.to_integral_value():
            raise ValueError(f"money must be whole cents, got {value}")
        return int(cents)

    def process_result_value(self, value: int | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value) * CENT


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime``; SQLite keeps no offset, so store naive UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"datetimes must be timezone-aware, got {value!r}")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Account(Base):
    """A customer: owns API keys and a prepaid balance."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Key for the HMAC signature of this account's webhook callbacks (X-Phota-Signature).
    webhook_secret: Mapped[str] = mapped_column(String(64), default=lambda: secrets.token_hex(32))
    # Always equal to the sum of this account's ledger amounts; updated in the same
    # transaction as each ledger row so a conditional UPDATE can guard against overdraft.
    balance: Mapped[Decimal] = mapped_column("balance_cents", Money, default=Decimal("0.00"))

    __table_args__ = (CheckConstraint("balance_cents >= 0", name="ck_accounts_balance"),)


class ApiKey(Base):
    """An API key. Only its SHA-256 is stored: keys carry 256 random bits, so a slow
    password hash would add latency without adding security (nothing to brute-force)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # First 8 characters of the key: shown in listings and used to find the row.
    prefix: Mapped[str] = mapped_column(String(8), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class LedgerEntry(Base):
    """One movement of an account's balance; ``amount`` is signed (credits positive)."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column("amount_cents", Money)
    balance_after: Mapped[Decimal] = mapped_column("balance_after_cents", Money)
    reference: Mapped[str | None] = mapped_column(String(200), default=None)
    note: Mapped[str] = mapped_column(Text, default="")
    # Set on the row that closes a reservation (its settle, or its full refund): unique,
    # so the database itself refuses to settle or refund one reservation twice.
    closes_reservation_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_entries.id"), unique=True, default=None
    )

    __table_args__ = (
        CheckConstraint(
            "kind IN ('credit', 'reserve', 'settle', 'refund')", name="ck_ledger_entries_kind"
        ),
        Index("ix_ledger_entries_account_id_id", "account_id", "id"),
    )


JOB_STATUSES: Final = ("queued", "running", "succeeded", "failed")


class Job(Base):
    """One remix request, synchronous or async, from submission to its result.

    Every remix is a job, so a restart can find the work (and the money) that was in flight.
    ``request_hash`` is the SHA-256 of the canonical request body: a retried submit with the
    same ``client_request_id`` must carry the same body.
    """

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    is_async: Mapped[bool] = mapped_column(default=False)
    client_request_id: Mapped[str | None] = mapped_column(String(200), default=None)
    request_hash: Mapped[str] = mapped_column(String(64))
    # The validated request without its images (prompt, counts, format, seed, callback...).
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Base URL download and poll links are built on (the service's public URL at submit).
    base_url: Mapped[str] = mapped_column(String(2048))
    reservation_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_entries.id"), default=None
    )
    reserved: Mapped[Decimal] = mapped_column("reserved_cents", Money, default=Decimal("0.00"))
    charged: Mapped[Decimal | None] = mapped_column("charged_cents", Money, default=None)
    # Succeeded: {"known_subjects", "images", "download_urls", "reports"} with storage keys
    # in place of URLs (URLs are signed when the job is read). Failed: {"detail", "code",
    # "status_code"}.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    callback_status: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')", name="ck_jobs_status"
        ),
        # Idempotency: one job per (account, client_request_id); NULLs never collide.
        Index("ux_jobs_account_client_request", "account_id", "client_request_id", unique=True),
        Index("ix_jobs_status", "status"),
    )


# VALIDATING -> QUEUING -> IN_PROGRESS -> READY | ERROR, as in the hosted API. INACTIVE is
# in the hosted enum (meaning undocumented); it is accepted here but never set.
PROFILE_STATUSES: Final = ("VALIDATING", "QUEUING", "IN_PROGRESS", "READY", "ERROR", "INACTIVE")
PROFILE_TIERS: Final = ("standard", "fast")


class Profile(Base):
    """A trained identity: one subject learned from reference photos (see services.profiles).

    The photos and the profile picture live in storage under ``profiles/<id>/``; the row
    keeps the learned model (``ProfileModel.to_dict()``) once READY. Deleting a profile
    deletes the row and everything in storage.
    """

    __tablename__ = "profiles"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # Chosen by the client at creation (e.g. its end-user's id) and never changed.
    tag: Mapped[str | None] = mapped_column(String(128), default=None)
    training_tier: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="VALIDATING")
    # For the owner: why training failed, or which photos were not used.
    message: Mapped[str | None] = mapped_column(Text, default=None)
    photo_count: Mapped[int] = mapped_column(Integer)
    # One entry per submitted photo, in request order: {"label": "image_urls[3] (https://..)",
    # "problem": null | "why it could not be fetched or decoded"}.
    photos: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    model: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    reservation_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_entries.id"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(
            "status IN ('VALIDATING', 'QUEUING', 'IN_PROGRESS', 'READY', 'ERROR', 'INACTIVE')",
            name="ck_profiles_status",
        ),
        CheckConstraint("training_tier IN ('standard', 'fast')", name="ck_profiles_tier"),
        # Listing filters by account and tag; recovery looks for unfinished statuses.
        Index("ix_profiles_account_id_tag", "account_id", "tag"),
        Index("ix_profiles_status", "status"),
    )
