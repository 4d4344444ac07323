"""Prepaid billing: reserve the worst case before work, settle or refund after.

Ledger rows for one job (amounts signed, dollars)::

    reserve  -0.45   the worst case (3 outputs x 0.15) leaves the balance up front
    settle    0.00   closes the reservation; the note says what was charged (0.27)
    refund   +0.18   what was reserved but not charged

so the balance moves by exactly the charge, and ``sum(ledger) == balance`` always.
A failed or timed-out job is closed by one ``refund`` row of the whole reservation.

Like ``accounts``, these functions work in the caller's transaction: the caller commits.
Commit the reservation before starting the work, so that the money is held while the work
runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from photoremix.persistence.models import LedgerEntry
from photoremix.persistence.statements import insert_rows
from photoremix.services.accounts import (
    AccountError,
    InvalidAmount,
    _add_to_balance,
    _ledger_row,
    _move_balance,
    _record,
    _take_from_balance,
    get_account,
    parse_money,
)
from photoremix.settings import Settings


class InsufficientBalance(AccountError):  # noqa: N818 (name fixed by the service spec)
    """The balance does not cover the reservation (the API answers 402)."""

    def __init__(self, balance: Decimal, required: Decimal) -> None:
        super().__init__(
            f"Insufficient prepaid credit balance: {required} required, {balance} available."
        )
        self.balance = balance
        self.required = required


class ReservationClosed(AccountError):  # noqa: N818 (named like UnknownKey)
    """The reservation was already settled or refunded."""


@dataclass(frozen=True)
class Reservation:
    """Money held for one job; close it exactly once with ``settle`` or ``refund``."""

    account_id: str
    amount: Decimal
    reference: str | None
    ledger_entry_id: int  # the ``reserve`` row


@dataclass(frozen=True)
class Prices:
    """Dollars per output image, without and with a recognised profile."""

    per_output: Decimal
    per_recognised_output: Decimal

    @classmethod
    def from_settings(cls, settings: Settings) -> Prices:
        return cls(settings.price_per_output, settings.price_per_recognised_output)

    def charge(self, outputs: int, recognised_outputs: int) -> Decimal:
        """The charge for ``outputs`` images, ``recognised_outputs`` of them with a profile."""
        if outputs < 0 or not 0 <= recognised_outputs <= outputs:
            raise ValueError(
                f"need 0 <= recognised_outputs <= outputs, got {recognised_outputs} and {outputs}"
            )
        return (
            outputs - recognised_outputs
        ) * self.per_output + recognised_outputs * self.per_recognised_output

    def worst_case(self, outputs: int) -> Decimal:
        """What to reserve before work: every output priced as recognised."""
        return self.charge(outputs, outputs)


def load_reservation(session: Session, ledger_entry_id: int | None) -> Reservation:
    """The reservation made by ledger row ``ledger_entry_id`` (a ``reserve`` row)."""
    entry = session.get(LedgerEntry, ledger_entry_id) if ledger_entry_id is not None else None
    if entry is None or entry.kind != "reserve":
        raise ValueError(f"ledger row {ledger_entry_id} is not a reservation")
    return Reservation(
        account_id=entry.account_id,
        amount=-entry.amount,
        reference=entry.reference,
        ledger_entry_id=entry.id,
    )


def reserve(
    session: Session, account_id: str, amount: Decimal | str, reference: str | None = None
) -> Reservation:
    """Hold ``amount`` from the balance; raise ``InsufficientBalance`` writing nothing.

    One conditional UPDATE (``... WHERE balance >= amount``) both checks and takes the
    money, so concurrent reservations cannot overdraw on SQLite or PostgreSQL.
    """
    held = parse_money(amount)
    balance_after = _take_from_balance(session, account_id, held)
    if balance_after is None:
        balance = get_account(session, account_id).balance  # raises UnknownAccount
        raise InsufficientBalance(balance=balance, required=held)
    row = _ledger_row(account_id, -held, balance_after, "reserve", "", reference, None)
    entry_id = _record(session, row)
    return Reservation(
        account_id=account_id, amount=held, reference=reference, ledger_entry_id=entry_id
    )


def settle(session: Session, reservation: Reservation, charged: Decimal | str) -> None:
    """Charge ``charged`` (at most the reserved amount) and refund the rest.

    Two ledger rows, ``settle`` (amount 0: the money already left the balance at reserve
    time) and, when something is left, ``refund``, written together after one balance
    UPDATE. Raises ``ReservationClosed`` if the reservation was already settled or refunded.
    """
    charge = parse_money(charged, allow_zero=True)
    if charge > reservation.amount:
        raise InvalidAmount(f"cannot charge {charge}: only {reservation.amount} was reserved")
    rest = reservation.amount - charge
    account_id, reference = reservation.account_id, reservation.reference
    # The unique closes_reservation_id makes a second close fail inside the database,
    # even when two processes try at once; the savepoint keeps the caller's transaction.
    try:
        with session.begin_nested():
            balance = _add_to_balance(session, account_id, rest)
            rows = [
                _ledger_row(
                    account_id,
                    Decimal("0.00"),
                    balance - rest,
                    "settle",
                    note=f"charged {charge} of {reservation.amount} reserved",
                    reference=reference,
                    closes_reservation_id=reservation.ledger_entry_id,
                )
            ]
            if rest:
                rows.append(
                    _ledger_row(
                        account_id,
                        rest,
                        balance,
                        "refund",
                        note=f"unused part of reservation {reservation.ledger_entry_id}",
                        reference=reference,
                        closes_reservation_id=None,
                    )
                )
            insert_rows(session, LedgerEntry, rows)
    except IntegrityError:
        raise ReservationClosed(
            f"reservation {reservation.ledger_entry_id} was already settled or refunded"
        ) from None


def refund(session: Session, reservation: Reservation, note: str = "") -> None:
    """Return the whole reservation (failure or timeout); one ``refund`` row. Raises
    ``ReservationClosed`` if the reservation was already settled or refunded."""
    # The unique closes_reservation_id makes a second close fail inside the database,
    # even when two processes try at once.
    try:
        with session.begin_nested():
            _move_balance(
                session,
                reservation.account_id,
                reservation.amount,
                "refund",
                note=note or f"refund of reservation {reservation.ledger_entry_id}",
                reference=reservation.reference,
                closes_reservation_id=reservation.ledger_entry_id,
            )
    except IntegrityError:
        raise ReservationClosed(
            f"reservation {reservation.ledger_entry_id} was already settled or refunded"
        ) from None


def recent_ledger(session: Session, account_id: str, limit: int = 50) -> list[LedgerEntry]:
    """The account's newest ledger rows, newest first."""
    get_account(session, account_id)
    return list(
        session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.account_id == account_id)
            .order_by(LedgerEntry.id.desc())
            .limit(limit)
        )
    )
