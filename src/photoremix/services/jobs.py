"""Job rows and their money: create with a reservation, finish with a settle or refund.

A job moves ``queued -> running -> succeeded | failed`` and never back (except that a
restart re-queues an interrupted async job). Each move is a conditional UPDATE on the
current status, so when two parties race (a sync request timing out while its worker
finishes, or a restart recovering a job), exactly one wins, and only the winner touches
the reservation: a job is charged or refunded exactly once. (The ledger's unique
``closes_reservation_id`` enforces the same thing a second time, in the database.)

Like ``accounts`` and ``billing``, these functions work in the caller's transaction: the
caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from photoremix.persistence.models import Job, new_id, utcnow
from photoremix.persistence.statements import insert_row
from photoremix.persistence.transitions import transition, transition_returning
from photoremix.services import billing

UNFINISHED = ("queued", "running")


@dataclass(frozen=True)
class JobFailure:
    """Why a job failed, as shown to its owner: an HTTP status, a code and a sentence."""

    status_code: int
    code: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"status_code": self.status_code, "code": self.code, "detail": self.detail}


def create_job(
    session: Session,
    *,
    account_id: str,
    is_async: bool,
    params: dict[str, Any],
    base_url: str,
    reserve: Decimal,
    client_request_id: str | None = None,
    request_hash: str = "",
    running: bool = False,
) -> str:
    """A queued job holding ``reserve`` of the account's balance; returns its id.

    running: create it ``running`` instead (started now), for a job handed to a worker
    that is free for it: one transaction less than creating it queued and marking it.

    Raises ``billing.InsufficientBalance`` (nothing written) and, when another job of the
    account already has ``client_request_id``, ``sqlalchemy.exc.IntegrityError``.
    """
    # Reserve first, under an id chosen here, so the job row is written once, complete.
    # A duplicate client_request_id fails at the INSERT; the caller's rollback then takes
    # the reservation back with it.
    job_id, now = new_id(), utcnow()
    reservation = billing.reserve(session, account_id, reserve, reference=_ledger_reference(job_id))
    insert_row(
        session,
        Job,
        id=job_id,
        account_id=account_id,
        status="running" if running else "queued",
        created_at=now,
        started_at=now if running else None,
        is_async=is_async,
        client_request_id=client_request_id,
        request_hash=request_hash,
        params=params,
        base_url=base_url,
        reserved=reserve,
        reservation_id=reservation.ledger_entry_id,
    )
    return job_id


def get_job(session: Session, account_id: str, job_id: str) -> Job | None:
    """The account's job, or None: another account's job is reported as missing."""
    job = session.get(Job, job_id)
    return job if job is not None and job.account_id == account_id else None


def find_by_client_request_id(
    session: Session, account_id: str, client_request_id: str
) -> Job | None:
    return session.scalars(
        select(Job).where(Job.account_id == account_id, Job.client_request_id == client_request_id)
    ).first()


def mark_running(session: Session, job_id: str) -> tuple[dict[str, Any], bool] | None:
    """``queued -> running``, returning (params, is_async), what a worker needs to run the
    job, read by the same statement; None when the job is no longer queued (e.g. it
    timed out)."""
    row = transition_returning(
        session,
        Job,
        job_id,
        ("queued",),
        ("params", "is_async"),
        status="running",
        started_at=utcnow(),
    )
    return None if row is None else (dict(row.params), bool(row.is_async))


def prices_of(params: dict[str, Any]) -> billing.Prices:
    """The prices a job was accepted at (``params["prices"]``). Fixed when the job is
    accepted, so a price change while it runs (or across a restart) cannot charge more
    than was reserved."""
    prices = params["prices"]
    return billing.Prices(Decimal(prices["per_output"]), Decimal(prices["per_recognised_output"]))


def requeue(session: Session, job_id: str) -> bool:
    """``running -> queued`` for an async job interrupted by a restart."""
    return _move(session, job_id, ("running",), status="queued", started_at=None)


def succeed(session: Session, job_id: str, result: dict[str, Any], charge: Decimal) -> bool:
    """``running -> succeeded``, charging ``charge`` (``prices_of(params).charge(...)``,
    at most what was reserved) and refunding the rest.

    False when the job had already been finished by someone else (its timeout, a
    restart): then nothing is charged and the caller discards its work.
    """
    row = transition_returning(
        session,
        Job,
        job_id,
        ("running",),
        _RESERVATION_COLUMNS,
        status="succeeded",
        result=result,
        charged=charge,
        finished_at=utcnow(),
    )
    if row is None:
        return False
    billing.settle(session, _reservation(job_id, row), charge)
    return True


def fail(session: Session, job_id: str, failure: JobFailure) -> bool:
    """``queued|running -> failed``, refunding the whole reservation.

    False when the job had already finished (then its money was already settled).
    """
    row = transition_returning(
        session,
        Job,
        job_id,
        UNFINISHED,
        _RESERVATION_COLUMNS,
        status="failed",
        error=failure.as_dict(),
        charged=Decimal("0.00"),
        finished_at=utcnow(),
    )
    if row is None:
        return False
    reservation = _reservation(job_id, row)
    billing.refund(session, reservation, note=f"job {job_id} failed: {failure.code}")
    return True


def unfinished_jobs(session: Session) -> Sequence[Job]:
    """Jobs queued or running, oldest first (what a restart must resume or fail)."""
    return session.scalars(
        select(Job).where(Job.status.in_(UNFINISHED)).order_by(Job.created_at, Job.id)
    ).all()


def set_callback_status(session: Session, job_id: str, status: str) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(callback_status=status))


# --- helpers ---------------------------------------------------------------------------


def _move(session: Session, job_id: str, from_statuses: Sequence[str], **values: Any) -> bool:
    return transition(session, Job, job_id, from_statuses, **values)


def _ledger_reference(job_id: str) -> str:
    """The ``reference`` of a job's ledger rows."""
    return f"job:{job_id}"


# What a finished job's money needs, read by the status change itself.
_RESERVATION_COLUMNS = ("account_id", "reserved", "reservation_id")


def _reservation(job_id: str, row: Row[Any]) -> billing.Reservation:
    """The reservation ``create_job`` made for the job (``row``: _RESERVATION_COLUMNS),
    without reading its ledger row back."""
    if row.reservation_id is None:
        raise ValueError(f"job {job_id} holds no reservation")
    return billing.Reservation(
        account_id=row.account_id,
        amount=row.reserved,
        reference=_ledger_reference(job_id),
        ledger_entry_id=row.reservation_id,
    )
