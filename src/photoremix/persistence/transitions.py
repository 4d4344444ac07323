"""Compare-and-set status changes, the one way jobs and profiles change state.

``UPDATE ... WHERE id = ? AND status IN (...)`` is atomic on SQLite and PostgreSQL alike:
when two parties race to finish the same row (a timeout and its worker, a restart and a
late thread), exactly one sees ``True`` and only that one may touch the row's money.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, update
from sqlalchemy.orm import Session


def transition(
    session: Session,
    table: type[Any],
    row_id: str,
    from_statuses: Sequence[str],
    /,
    **values: Any,
) -> bool:
    """Set ``values`` (column names, positional-only parameters avoid clashes) on row
    ``row_id`` of ``table`` if its status is one of ``from_statuses``; True if it was.
    A loaded instance of the row is refreshed."""
    changed = transition_returning(session, table, row_id, from_statuses, (table.id,), **values)
    return changed is not None


def transition_returning(
    session: Session,
    table: type[Any],
    row_id: str,
    from_statuses: Sequence[str],
    columns: Sequence[Any],
    /,
    **values: Any,
) -> Row[Any] | None:
    """``transition`` that also reads ``columns`` of the row as updated, in the same
    statement (``UPDATE ... RETURNING``); None when the row was not in ``from_statuses``.
    One statement where a status change and a SELECT of what the winner needs would be
    two, on the path of every remix."""
    row = session.execute(
        update(table)
        .where(table.id == row_id, table.status.in_(from_statuses))
        .values(**values)
        .returning(*columns)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    # Only an instance this session already holds needs refreshing; loading one would
    # cost a SELECT for nothing.
    loaded = session.identity_map.get(session.identity_key(table, row_id))
    if loaded is not None:
        session.refresh(loaded)
    return row
