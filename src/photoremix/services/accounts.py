"""Accounts and API keys.

Every function works inside the caller's session and transaction and never commits: the
caller commits (or rolls back), so a request's reads and writes form one transaction.

A key is 43 URL-safe characters (32 random bytes). Only its SHA-256 is stored, next to its
first 8 characters (the *prefix*), which identify it in listings and narrow the lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from sqlalchemy import Update, bindparam, select, update
from sqlalchemy.orm import Session

from photoremix.persistence.models import CENT, Account, ApiKey, LedgerEntry, Money, utcnow
from photoremix.persistence.statements import core_connection, insert_row

KEY_BYTES: Final = 32
PREFIX_LENGTH: Final = 8
MAX_AMOUNT: Final = Decimal("1000000000.00")  # far below the 64-bit cents limit


class AccountError(Exception):
    """A request about accounts, keys or money was refused; the message is for people."""


class UnknownKey(AccountError):  # noqa: N818 (name fixed by the service spec)
    """No key matches (the API answers 401)."""


class RevokedKey(AccountError):  # noqa: N818 (name fixed by the service spec)
    """The key exists but was revoked (the API answers 401)."""


class AmbiguousKey(AccountError):  # noqa: N818 (named like UnknownKey)
    """A prefix matches several keys."""


class UnknownAccount(AccountError):  # noqa: N818 (named like UnknownKey)
    """No account has this id."""


class InvalidAmount(AccountError, ValueError):  # noqa: N818 (named like UnknownKey)
    """An amount of money is not a positive number of whole cents."""


def parse_money(value: Decimal | str | int, *, allow_zero: bool = False) -> Decimal:
    """``value`` as dollars with two decimal places; raise ``InvalidAmount`` otherwise.

    Accepts ``Decimal``, ``int`` or a string such as ``"10"`` or ``"0.15"``; refuses
    ``float`` (binary floats cannot hold most cent amounts), sub-cent, negative, non-finite
    and absurdly large amounts.
    """
    if isinstance(value, float | bool):
        raise InvalidAmount(f"amount must be a decimal string or Decimal, not {value!r}")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, TypeError, ValueError):
        raise InvalidAmount(f"{value!r} is not an amount of money (e.g. 10.00)") from None
    if not amount.is_finite():
        raise InvalidAmount(f"{value!r} is not an amount of money (e.g. 10.00)")
    if amount != amount.quantize(CENT):
        raise InvalidAmount(f"{value} has fractions of a cent; use at most two decimals")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidAmount(
            f"amount must be {'zero or ' if allow_zero else ''}positive, got {value}"
        )
    if amount > MAX_AMOUNT:
        raise InvalidAmount(f"amount {value} is larger than {MAX_AMOUNT}")
    return amount.quantize(CENT)


def hash_key(key: str) -> str:
    """SHA-256 hex of a key: a fast hash suffices because keys carry 256 random bits."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never the key itself."""

    id: str
    prefix: str
    account_id: str
    account_name: str
    created_at: datetime
    revoked_at: datetime | None


def get_account(session: Session, account_id: str) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise UnknownAccount(f"no account with id {account_id!r}")
    return account


def create_account(
    session: Session, name: str, credit: Decimal | str | int = Decimal("0.00")
) -> tuple[Account, str]:
    """A new account with ``credit`` (a ledger ``credit`` row if non-zero) and one key.

    Returns the account and the plaintext key, which is not stored and cannot be shown again.
    """
    name = name.strip()
    if not name or len(name) > 200:
        raise AccountError("account name must be 1 to 200 characters")
    amount = parse_money(credit, allow_zero=True)
    account = Account(name=name, balance=Decimal("0.00"))
    session.add(account)
    session.flush()
    if amount:
        add_credit(session, account.id, amount, note="starting credit")
    _, key = create_key(session, account.id)
    return account, key


def create_key(session: Session, account_id: str) -> tuple[ApiKey, str]:
    """A new key for an existing account; returns the row and the plaintext key."""
    get_account(session, account_id)
    key = secrets.token_urlsafe(KEY_BYTES)
    api_key = ApiKey(account_id=account_id, prefix=key[:PREFIX_LENGTH], key_hash=hash_key(key))
    session.add(api_key)
    session.flush()
    return api_key, key


def authenticate(session: Session, key: str) -> Account:
    """The account owning ``key``; raise ``UnknownKey`` or ``RevokedKey``."""
    if not isinstance(key, str) or len(key) < PREFIX_LENGTH + 1:
        raise UnknownKey("invalid API key")
    presented_hash = hash_key(key)
    # One query for the key and its account, built once: this runs on every request, and
    # loading the key as an ORM object too doubled its cost.
    candidates = session.execute(_KEYS_WITH_ACCOUNT, {"prefix": key[:PREFIX_LENGTH]}).all()
    # Compare hashes in constant time rather than letting the index compare the secret.
    match = next(
        (row for row in candidates if hmac.compare_digest(row.key_hash, presented_hash)),
        None,
    )
    if match is None:
        raise UnknownKey("invalid API key")
    if match.revoked_at is not None:
        raise RevokedKey(f"API key {key[:PREFIX_LENGTH]}... was revoked")
    return match.Account  # type: ignore[no-any-return]


_KEYS_WITH_ACCOUNT = (
    select(Account, ApiKey.key_hash, ApiKey.revoked_at)
    .join(ApiKey, ApiKey.account_id == Account.id)
    .where(ApiKey.prefix == bindparam("prefix"))
)


def _find_key(session: Session, key_id_or_prefix: str) -> ApiKey:
    """A key by its id, its full plaintext, or an unambiguous prefix (at least 4 chars)."""
    text = key_id_or_prefix.strip()
    by_id = session.get(ApiKey, text)
    if by_id is not None:
        return by_id
    by_hash = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(text))).first()
    if by_hash is not None:
        return by_hash
    if len(text) < 4 or len(text) > PREFIX_LENGTH:
        raise UnknownKey(f"no key matches {text!r} (give its id, prefix or the key itself)")
    matches = session.scalars(select(ApiKey).where(ApiKey.prefix.startswith(text))).all()
    if not matches:
        raise UnknownKey(f"no key matches {text!r} (give its id, prefix or the key itself)")
    if len(matches) > 1:
        raise AmbiguousKey(f"{len(matches)} keys start with {text!r}; give the key id instead")
    return matches[0]


def revoke_key(session: Session, key_id_or_prefix: str) -> ApiKey:
    """Revoke a key (by id, plaintext or prefix); revoking twice keeps the first time."""
    api_key = _find_key(session, key_id_or_prefix)
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
        session.flush()
    return api_key


def list_keys(session: Session, account_id: str | None = None) -> list[KeyInfo]:
    """All keys (of one account if given), oldest first."""
    query = (
        select(ApiKey, Account.name)
        .join(Account, Account.id == ApiKey.account_id)
        .order_by(ApiKey.created_at, ApiKey.id)
    )
    if account_id is not None:
        query = query.where(ApiKey.account_id == account_id)
    return [
        KeyInfo(
            id=api_key.id,
            prefix=api_key.prefix,
            account_id=api_key.account_id,
            account_name=name,
            created_at=api_key.created_at,
            revoked_at=api_key.revoked_at,
        )
        for api_key, name in session.execute(query)
    ]


def add_credit(
    session: Session,
    account_id: str,
    amount: Decimal | str | int,
    note: str = "",
    reference: str | None = None,
) -> Decimal:
    """Add prepaid credit: one ``credit`` ledger row and the balance, in one transaction.
    Returns the new balance."""
    credit = parse_money(amount)
    return _move_balance(session, account_id, credit, "credit", note=note, reference=reference)


def _move_balance(
    session: Session,
    account_id: str,
    amount: Decimal,
    kind: str,
    *,
    note: str = "",
    reference: str | None = None,
    closes_reservation_id: int | None = None,
) -> Decimal:
    """Add ``amount`` (signed) to the balance in SQL and record the ledger row; returns
    the new balance.

    Callers that take money out guard against overdraft themselves (billing.reserve).
    """
    balance = _add_to_balance(session, account_id, amount)
    row = _ledger_row(account_id, amount, balance, kind, note, reference, closes_reservation_id)
    _record(session, row)
    return balance


# The balance changes on every remix (reserve, settle): Core statements built once.
_accounts = Account.__table__
_account_id = bindparam("account_id")
_amount = bindparam("amount", type_=Money())
_ADD_TO_BALANCE = (
    update(_accounts)
    .where(_accounts.c.id == _account_id)
    .values(balance_cents=_accounts.c.balance_cents + _amount)
    .returning(_accounts.c.balance_cents)
)
_TAKE_FROM_BALANCE = (
    update(_accounts)
    .where(_accounts.c.id == _account_id, _accounts.c.balance_cents >= _amount)
    .values(balance_cents=_accounts.c.balance_cents - _amount)
    .returning(_accounts.c.balance_cents)
)


def _add_to_balance(session: Session, account_id: str, amount: Decimal) -> Decimal:
    """Add ``amount`` (signed) to the balance in SQL; the new balance (RETURNING). The
    caller writes the ledger row(s) in the same transaction."""
    balance = _change_balance(session, _ADD_TO_BALANCE, account_id, amount)
    if balance is None:
        raise UnknownAccount(f"no account with id {account_id!r}")
    return balance


def _take_from_balance(session: Session, account_id: str, amount: Decimal) -> Decimal | None:
    """Take ``amount`` from the balance if it covers it; the new balance, else None
    (nothing changed). One conditional UPDATE both checks and takes the money, so
    concurrent takers cannot overdraw on SQLite or PostgreSQL."""
    return _change_balance(session, _TAKE_FROM_BALANCE, account_id, amount)


def _change_balance(
    session: Session, statement: Update, account_id: str, amount: Decimal
) -> Decimal | None:
    balance = (
        core_connection(session)
        .execute(statement, {"account_id": account_id, "amount": amount})
        .scalar_one_or_none()
    )
    # An Account object this session already holds still has the old balance. Looked up
    # in the identity map only: loading one here would cost a SELECT for nothing.
    account = session.identity_map.get(session.identity_key(Account, account_id))
    if account is not None:
        session.expire(account, ["balance"])  # reloaded on next access
    return balance


def _record(session: Session, row: dict[str, Any]) -> int:
    """Write a ledger row (``_ledger_row``) for a balance change already applied in this
    transaction; returns its id."""
    entry_id: int = insert_row(session, LedgerEntry, "id", **row)
    return entry_id


def _ledger_row(
    account_id: str,
    amount: Decimal,
    balance_after: Decimal,
    kind: str,
    note: str,
    reference: str | None,
    closes_reservation_id: int | None,
) -> dict[str, Any]:
    """A ledger row's values, for ``_record`` or ``statements.insert_rows``
    (``balance_after``: the balance the change produced, from its UPDATE's RETURNING)."""
    return {
        "account_id": account_id,
        "kind": kind,
        "amount": amount,
        "balance_after": balance_after,
        "reference": reference,
        "note": note,
        "closes_reservation_id": closes_reservation_id,
    }
