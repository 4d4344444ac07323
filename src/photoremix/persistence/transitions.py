"""Compare-and-set status changes, the one way jobs and profiles change state.

``UPDATE ... WHERE id = ? AND status IN (...)`` is atomic on SQLite and PostgreSQL alike:
when two parties race to finish the same row (a timeout and its worker, a restart and a
late thread), exactly one sees ``True`` and only that one may touch the row's money.

The statements are SQLAlchemy Core, built once per shape (see ``statements``): every
remix makes two of these changes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Update, bindparam, inspect, update
from sqlalchemy.orm import Session

from photoremix.persistence.statements import core_connection

_ROW_ID = "_row_id"  # the id's bind name; cannot clash with a column's attribute name


def transition(
    session: Session,
    table: type[Any],
    row_id: str,
    from_statuses: Sequence[str],
    /,
    **values: Any,
) -> bool:
    """Set ``values`` (attribute names, positional-only parameters avoid clashes) on row
    ``row_id`` of ``table`` if its status is one of ``from_statuses``; True if it was.
    A loaded instance of the row is refreshed."""
    changed = transition_returning(session, table, row_id, from_statuses, ("id",), **values)
    return changed is not None


def transition_returning(
    session: Session,
    table: type[Any],
    row_id: str,
    from_statuses: Sequence[str],
    columns: Sequence[str],
    /,
    **values: Any,
) -> Row[Any] | None:
    """``transition`` that also reads ``columns`` (attribute names) of the row as updated,
    in the same statement (``UPDATE ... RETURNING``); None when the row was not in
    ``from_statuses``. One statement where a status change and a SELECT of what the winner
    needs would be two, on the path of every remix."""
    statement = _update_statement(table, tuple(from_statuses), tuple(values), tuple(columns))
    row = core_connection(session).execute(statement, {_ROW_ID: row_id, **values}).one_or_none()
    # Only an instance this session already holds needs refreshing; loading one would
    # cost a SELECT for nothing.
    loaded = session.identity_map.get(session.identity_key(table, row_id))
    if loaded is not None:
        session.refresh(loaded)
    return row


@functools.cache
def _update_statement(
    table: type[Any],
    from_statuses: tuple[str, ...],
    names: tuple[str, ...],
    columns: tuple[str, ...],
) -> Update:
    """``UPDATE table SET name = :name ... WHERE id = :_row_id AND status IN from_statuses
    RETURNING columns``, on the mapped table; result columns are named like attributes."""
    mapper = inspect(table)
    target = mapper.local_table
    column_of = mapper.columns  # attribute name -> Column (e.g. "charged" -> charged_cents)
    return (
        update(target)
        .where(column_of["id"] == bindparam(_ROW_ID), column_of["status"].in_(from_statuses))
        .values({column_of[name]: bindparam(name, type_=column_of[name].type) for name in names})
        .returning(*(column_of[name].label(name) for name in columns))
    )
