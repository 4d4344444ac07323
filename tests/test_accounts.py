"""Accounts and API keys: schema via migrations, hashed keys, authentication, credit."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session

from photoremix.persistence import Account, ApiKey, Base, LedgerEntry, make_engine, migrate
from photoremix.services.accounts import (
    InvalidAmount,
    RevokedKey,
    UnknownAccount,
    UnknownKey,
    add_credit,
    authenticate,
    create_account,
    create_key,
    hash_key,
    list_keys,
    parse_money,
    revoke_key,
)


@pytest.fixture
def engine(database: Engine) -> Engine:
    return database  # conftest's migrated SQLite database, under this file's usual name


def test_migrations_create_schema_on_empty_file_and_are_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    migrate(url)
    migrate(url)  # second run: already at head, must not fail or duplicate anything
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"accounts", "api_keys", "ledger_entries", "jobs", "alembic_version"} <= tables
        with engine.connect() as connection:
            # The migration and the models describe the same schema.
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
            versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert versions.scalars().all() == ["0003"]
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(engine: Engine) -> None:
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0


def test_keys_are_stored_hashed_never_in_plaintext(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session, session.begin():
        account, key = create_account(session, "Ada", Decimal("10.00"))
        account_id = account.id
    engine.dispose()  # checkpoint-free: also read the WAL file below

    raw = b"".join(path.read_bytes() for path in (tmp_path / "db").iterdir() if path.is_file())
    assert key.encode() not in raw
    with sqlite3.connect(tmp_path / "db" / "photoremix.db") as connection:
        stored = connection.execute(
            "SELECT prefix, key_hash FROM api_keys WHERE account_id = ?", (account_id,)
        ).fetchall()
    assert stored == [(key[:8], hash_key(key))]
    assert len(key) >= 43  # 32 random bytes, URL-safe base64


def test_authenticate_ok_unknown_and_revoked(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        account, key = create_account(session, "Ada", Decimal("1.00"))
        _, second_key = create_key(session, account.id)
        account_id = account.id

    with Session(engine) as session:
        assert authenticate(session, key).id == account_id
        assert authenticate(session, second_key).id == account_id
        with pytest.raises(UnknownKey):
            authenticate(session, key[:8] + "x" * (len(key) - 8))  # right prefix, wrong key
        with pytest.raises(UnknownKey):
            authenticate(session, "")

    with Session(engine) as session, session.begin():
        revoked = revoke_key(session, key[:8])
        assert revoked.revoked_at is not None
    with Session(engine) as session:
        with pytest.raises(RevokedKey):
            authenticate(session, key)
        assert authenticate(session, second_key).id == account_id  # other key unaffected
        listed = {info.prefix: info for info in list_keys(session)}
        assert listed[key[:8]].revoked_at is not None
        assert listed[second_key[:8]].revoked_at is None
        assert all(info.account_name == "Ada" for info in listed.values())


def test_revoke_by_id_and_by_full_key(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        account, key = create_account(session, "Ada")
        api_key, other_key = create_key(session, account.id)
        revoke_key(session, api_key.id)
        revoke_key(session, key)
    with Session(engine) as session:
        for plaintext in (key, other_key):
            with pytest.raises(RevokedKey):
                authenticate(session, plaintext)
        with pytest.raises(UnknownKey):
            revoke_key(session, "nothing-like-this")


def test_create_account_credit_and_add_credit_keep_ledger_and_balance_equal(
    engine: Engine,
) -> None:
    with Session(engine) as session, session.begin():
        account, _ = create_account(session, "Ada", "10.00")
        add_credit(session, account.id, Decimal("0.10"), note="top-up")
        add_credit(session, account.id, "0.20")
        account_id = account.id
    with Session(engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        assert account.balance == Decimal("10.30")
        rows = session.scalars(
            select(LedgerEntry).where(LedgerEntry.account_id == account_id)
        ).all()
        assert [row.kind for row in rows] == ["credit", "credit", "credit"]
        assert sum(row.amount for row in rows) == account.balance
        assert rows[-1].balance_after == account.balance
        assert all(isinstance(row.amount, Decimal) for row in rows)


def test_zero_starting_credit_writes_no_ledger_row(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        account, _ = create_account(session, "Zero", "0")
        assert account.balance == Decimal("0.00")
        count = session.scalar(select(func.count()).select_from(LedgerEntry))
        assert count == 0
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 1


def test_add_credit_refuses_bad_amounts_and_unknown_accounts(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        account, _ = create_account(session, "Ada")
        for bad in ("-1.00", "0", "abc", "0.001", "NaN", "Infinity", 0.1):
            with pytest.raises(InvalidAmount):
                add_credit(session, account.id, bad)  # type: ignore[arg-type]
        with pytest.raises(UnknownAccount):
            add_credit(session, "no-such-account", "1.00")
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 0


def test_parse_money_normalises_to_cents() -> None:
    assert parse_money("10") == Decimal("10.00")
    assert str(parse_money(" 0.5 ")) == "0.50"
    assert parse_money(3) == Decimal("3.00")
    assert parse_money("0", allow_zero=True) == Decimal("0.00")
