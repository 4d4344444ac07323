"""Job rows and their money: create with a reservation, finish with a settle or refund.

A job moves ``queued -> running -> succeeded | failed`` and never back (except that a
restart re-queues an interrupted async job). Each move is a conditional UPDATE on the
current status, so when two parties race (a sync request timing out while its worker
finishes, or a restart recovering a job), exactly one wins, and only the winner touches
the reservation: a job is charged or refunded exactly once. (The ledger's unique
``closes_reservation_id`` enforces the same thing a second time, in the database.)

Like ``accounts`` and ``billing``, these functions only flush: the caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from photoremix.persistence.models import Job, new_id, utcnow
from photoremix.persistence.transitions import transition
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
) -> Job:
    """A queued job holding ``reserve`` of the account's balance.

    Raises ``billing.InsufficientBalance`` (nothing written) and, when another job of the
    account already has ``client_request_id``, ``sqlalchemy.exc.IntegrityError`` at flush.
    """
    # Reserve first, under an id chosen here, so the job row is written once, complete.
    # A duplicate client_request_id fails at the INSERT; the caller's rollback then takes
    # the reservation back with it.
    job_id = new_id()
    reservation = billing.reserve(session, account_id, reserve, reference=f"job:{job_id}")
    job = Job(
        id=job_id,
        account_id=account_id,
        status="queued",
        is_async=is_async,
        client_request_id=client_request_id,
        request_hash=request_hash,
        params=params,
        base_url=base_url,
        reserved=reserve,
        reservation_id=reservation.ledger_entry_id,
    )
    session.add(job)
    session.flush()
    return job


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


def mark_running(session: Session, job_id: str) -> bool:
    """``queued -> running``; False when the job is no longer queued (e.g. timed out)."""
    return _move(session, job_id, ("queued",), status="running", started_at=utcnow())


def run_parameters(session: Session, job_id: str) -> tuple[dict[str, Any], bool]:
    """(params, is_async) of an existing job: what a worker needs to run it (two columns,
    not the whole row: this is on every remix's path)."""
    row = session.execute(select(Job.params, Job.is_async).where(Job.id == job_id)).one()
    return dict(row.params), bool(row.is_async)


def requeue(session: Session, job_id: str) -> bool:
    """``running -> queued`` for an async job interrupted by a restart."""
    return _move(session, job_id, ("running",), status="queued", started_at=None)


def succeed(
    session: Session, job_id: str, result: dict[str, Any], outputs: int, recognised: int
) -> Decimal | None:
    """``running -> succeeded``, charging for the outputs and refunding the rest.

    Returns the charge, or None when the job had already been finished by someone else
    (its timeout, a restart): then nothing is charged and the caller discards its work.
    """
    money = _money_of(session, job_id)
    if money is None:
        return None
    prices, reservation_id = money
    charge = prices.charge(outputs, recognised)
    if not _move(
        session,
        job_id,
        ("running",),
        status="succeeded",
        result=result,
        charged=charge,
        finished_at=utcnow(),
    ):
        return None
    billing.settle(session, billing.load_reservation(session, reservation_id), charge)
    return charge


def fail(session: Session, job_id: str, failure: JobFailure) -> bool:
    """``queued|running -> failed``, refunding the whole reservation.

    False when the job had already finished (then its money was already settled).
    """
    money = _money_of(session, job_id)
    if money is None:
        return False
    if not _move(
        session,
        job_id,
        UNFINISHED,
        status="failed",
        error=failure.as_dict(),
        charged=Decimal("0.00"),
        finished_at=utcnow(),
    ):
        return False
    reservation = billing.load_reservation(session, money[1])
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


def _money_of(session: Session, job_id: str) -> tuple[billing.Prices, int | None] | None:
    """The job's prices and reservation row id; None for an unknown job.

    Two columns, not the Job object: loading it would also make ``transition`` refresh it
    (one more SELECT of the whole row) on the hot path of every remix.
    """
    row = session.execute(
        select(Job.params, Job.reservation_id).where(Job.id == job_id)
    ).one_or_none()
    if row is None:
        return None
    # Prices are fixed when the job is accepted, so a price change while it runs (or across
    # a restart) cannot charge more than was reserved.
    prices = row.params["prices"]
    return (
        billing.Prices(Decimal(prices["per_output"]), Decimal(prices["per_recognised_output"])),
        row.reservation_id,
    )
