"""Core statements on the mapped tables, for the writes on every remix's path.

The ORM builds and flushes a statement per call; on the path of a remix (authenticate,
reserve, start, finish and settle) that Python work cost several times the database's own
(about 7 ms a remix on SQLite against 2 ms for the same statements built once). The
helpers here build each statement shape once and run it on the session's connection, in
the session's transaction, so callers keep working with ``Session`` as everywhere else.

Attribute names (``reserved``), not column names (``reserved_cents``), go in and come out.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Insert, bindparam, insert, inspect
from sqlalchemy.orm import Session


def core_connection(session: Session) -> Connection:
    """The session's connection, after flushing what the session holds (Core statements
    bypass the ORM's autoflush, and may depend on rows added through it)."""
    session.flush()  # a no-op check when nothing is pending
    return session.connection()


def insert_row(
    session: Session, model: type[Any], returning: str | None = None, /, **attributes: Any
) -> Any:
    """INSERT one row of ``model`` (attribute values; column defaults fill the rest).

    Returns the ``returning`` attribute of the new row (e.g. an autoincrement id), or None.
    Objects of ``model`` the session holds are not told about the row.
    """
    statement = _insert_statement(model, tuple(attributes), returning)
    result = core_connection(session).execute(statement, attributes)
    return result.scalar_one() if returning is not None else None


def insert_rows(session: Session, model: type[Any], rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT rows of ``model`` (attribute values, the same attributes in each) with one
    execution (the driver's executemany)."""
    statement = _insert_statement(model, tuple(rows[0]), None)
    core_connection(session).execute(statement, [dict(row) for row in rows])


@functools.cache
def _insert_statement(model: type[Any], names: tuple[str, ...], returning: str | None) -> Insert:
    column_of = inspect(model).columns  # attribute name -> Column
    statement = insert(inspect(model).local_table).values(
        {column_of[name]: bindparam(name, type_=column_of[name].type) for name in names}
    )
    return statement.returning(column_of[returning]) if returning is not None else statement
