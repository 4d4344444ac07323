"""Prepaid billing: reservations, settlement, refunds, and no overdraft under races."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from photoremix.persistence import Account, LedgerEntry
from photoremix.services.accounts import create_account
from photoremix.services.billing import (
    InsufficientBalance,
    Prices,
    ReservationClosed,
    recent_ledger,
    refund,
    reserve,
    settle,
)
from photoremix.settings import Settings


@pytest.fixture
def engine(database: Engine) -> Engine:
    return database  # conftest's migrated SQLite database, under this file's usual name


def _account(engine: Engine, credit: str) -> str:
    with Session(engine) as session, session.begin():
        account, _ = create_account(session, "Ada", credit)
        return account.id


def _balance_and_ledger(engine: Engine, account_id: str) -> tuple[Decimal, list[LedgerEntry]]:
    with Session(engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        rows = session.scalars(
            select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id)
        ).all()
        return account.balance, list(rows)


def test_reserve_then_settle_moves_balance_by_exactly_the_charge(engine: Engine) -> None:
    account_id = _account(engine, "10.00")
    with Session(engine) as session, session.begin():
        reservation = reserve(session, account_id, Decimal("0.45"), reference="job-1")
    balance, _ = _balance_and_ledger(engine, account_id)
    assert balance == Decimal("9.55")  # the worst case is held while the job runs

    with Session(engine) as session, session.begin():
        settle(session, reservation, Decimal("0.27"))

    balance, rows = _balance_and_ledger(engine, account_id)
    assert balance == Decimal("10.00") - Decimal("0.27")
    job_rows = [row for row in rows if row.reference == "job-1"]
    assert [row.kind for row in job_rows] == ["reserve", "settle", "refund"]
    assert sum(row.amount for row in job_rows) == Decimal("-0.27")
    assert job_rows[-1].balance_after == balance
    assert sum(row.amount for row in rows) == balance


def test_refund_returns_everything(engine: Engine) -> None:
    account_id = _account(engine, "1.00")
    with Session(engine) as session, session.begin():
        reservation = reserve(session, account_id, "0.60", reference="job-2")
        refund(session, reservation, note="timed out")
    balance, rows = _balance_and_ledger(engine, account_id)
    assert balance == Decimal("1.00")
    assert [row.kind for row in rows] == ["credit", "reserve", "refund"]
    assert sum(row.amount for row in rows) == balance


def test_a_reservation_closes_only_once(engine: Engine) -> None:
    account_id = _account(engine, "1.00")
    with Session(engine) as session, session.begin():
        reservation = reserve(session, account_id, "0.30")
        settle(session, reservation, "0.30")
    for close in (lambda s: settle(s, reservation, "0.00"), lambda s: refund(s, reservation)):
        with Session(engine) as session, session.begin(), pytest.raises(ReservationClosed):
            close(session)
    balance, rows = _balance_and_ledger(engine, account_id)
    assert balance == Decimal("0.70")
    assert sum(row.amount for row in rows) == balance


def test_settle_cannot_charge_more_than_reserved(engine: Engine) -> None:
    account_id = _account(engine, "1.00")
    with Session(engine) as session, session.begin():
        reservation = reserve(session, account_id, "0.30")
        with pytest.raises(ValueError, match="reserved"):
            settle(session, reservation, "0.31")


def test_insufficient_balance_writes_nothing(engine: Engine) -> None:
    account_id = _account(engine, "0.20")
    before = _balance_and_ledger(engine, account_id)
    with (
        Session(engine) as session,
        session.begin(),
        pytest.raises(InsufficientBalance) as raised,
    ):
        reserve(session, account_id, "0.45")
    assert raised.value.balance == Decimal("0.20")
    assert raised.value.required == Decimal("0.45")
    after = _balance_and_ledger(engine, account_id)
    assert after[0] == before[0]
    assert [row.id for row in after[1]] == [row.id for row in before[1]]


def test_racing_reservations_never_overdraw(engine: Engine) -> None:
    # Enough for exactly 3 of 8 concurrent 0.30 reservations; a read-then-write check
    # would let several threads see 1.00 and all succeed.
    account_id = _account(engine, "1.00")
    start = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(job: int) -> None:
        start.wait()
        with Session(engine) as session, session.begin():
            try:
                reserve(session, account_id, "0.30", reference=f"job-{job}")
                outcome = "reserved"
            except InsufficientBalance:
                outcome = "refused"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=attempt, args=(job,)) for job in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["refused"] * 5 + ["reserved"] * 3
    balance, rows = _balance_and_ledger(engine, account_id)
    assert balance == Decimal("0.10")
    assert sum(row.amount for row in rows) == balance
    assert all(row.balance_after >= 0 for row in rows)


def test_prices_come_from_settings() -> None:
    settings = Settings(price_per_output=Decimal("0.12"), price_per_recognised_output="0.15")
    prices = Prices.from_settings(settings)
    assert prices.charge(3, 1) == Decimal("0.39")
    assert prices.charge(0, 0) == Decimal("0")
    assert prices.worst_case(3) == Decimal("0.45")
    with pytest.raises(ValueError):
        prices.charge(1, 2)


def test_recent_ledger_is_newest_first_and_limited(engine: Engine) -> None:
    account_id = _account(engine, "5.00")
    with Session(engine) as session, session.begin():
        for job in range(3):
            refund(session, reserve(session, account_id, "0.15", reference=f"job-{job}"))
        rows = recent_ledger(session, account_id, limit=4)
        assert [row.kind for row in rows] == ["refund", "reserve", "refund", "reserve"]
        assert [row.reference for row in rows] == ["job-2", "job-2", "job-1", "job-1"]
        assert rows[0].id > rows[-1].id
