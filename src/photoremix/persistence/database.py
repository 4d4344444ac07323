"""Engines and schema migrations.

SQLite (the default) is opened in WAL mode (synchronous=NORMAL), so readers never wait for
the writer, with foreign keys enforced and a busy timeout instead of immediate "database is
locked" errors.
Every SQLite transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock up front,
so a transaction that reads (e.g. authenticates a key) and then writes (reserves credit)
cannot fail half-way when another writer got there first; writers queue for up to
``busy_timeout`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000


class DatabaseError(Exception):
    """The database cannot be opened or migrated; the message says what to fix."""


def make_engine(url: str, **engine_options: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys, a busy timeout, BEGIN IMMEDIATE.

    A SQLite database file's folder is created if missing.
    """
    try:
        parsed = make_url(url)
    except Exception as error:  # sqlalchemy raises ArgumentError for malformed URLs
        raise DatabaseError(f"invalid database URL {url!r}: {error}") from None
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, **engine_options)

    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **engine_options)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, connection_record: Any) -> None:
        # Autocommit at the driver level: pysqlite's own implicit BEGINs are replaced by
        # the explicit BEGIN IMMEDIATE below (SQLAlchemy's documented recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL never corrupts the database; a power cut (not a crash of the
        # process) may lose the last commits, which a restart then treats as unfinished
        # jobs (refunded or resumed). FULL would cost an fsync per commit (~4 ms each).
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (results outlive the transaction)."""
    return sessionmaker(engine, expire_on_commit=False)


def migrate(engine_or_url: Engine | str) -> None:
    """Upgrade the database schema to the newest revision (a no-op when already there)."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()
