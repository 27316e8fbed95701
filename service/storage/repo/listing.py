"""Pages of runs: filters, sorts, and opaque keyset cursors, so pages stay stable while runs are added."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, literal, or_, select, tuple_, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstrumentedAttribute, Session

from trainyard.service.storage.models import MAX_NAME_LENGTH, RUN_STATUSES, SUMMARY_FIELDS, Run, Sweep, fold, is_id
from trainyard.service.storage.repo._common import _choice

#: ``list_runs``'s page size when the caller gives none.
DEFAULT_LIST_LIMIT = 50
#: The largest page ``list_runs`` returns (a larger ``limit`` is clamped to it).
MAX_LIST_LIMIT = 500

#: ``list_runs`` sort keys (prefix ``-`` for descending).
SORT_FIELDS: dict[str, InstrumentedAttribute[Any]] = {
    "created_at": Run.created_at,
    "name": Run.name,
    "status": Run.status,
    "epochs_done": Run.epochs_done,
    **{field: getattr(Run, field) for field in SUMMARY_FIELDS},
}
_NULLABLE_SORTS = frozenset(SUMMARY_FIELDS)


def list_runs(
    *,
    session: Session,
    status: str | None = None,
    tag: str | None = None,
    sweep: str | None = None,
    q: str | None = None,
    project: str | None = None,
    sort: str = "-created_at",
    limit: int = DEFAULT_LIST_LIMIT,
    cursor: str | None = None,
) -> tuple[list[Run], str | None]:
    """One page of runs, and the cursor of the next page (None on the last).

    Parameters
    ----------
    status, tag
        Keep runs with this status, carrying this tag.
    sweep : str, optional
        Keep the runs of the sweep with this id, or of every sweep with this name.
    q : str, optional
        Keep runs whose name contains ``q``, ignoring case (Unicode case folding, the same on every database).
    project : str, optional
        Keep the runs of this project (its exact name).
    sort : str
        A key of :data:`SORT_FIELDS`, prefixed with ``-`` for descending.
        Ties are broken by id (in the same direction), and runs with no value
        (summary metrics of unfinished runs) come last in both directions.
    limit : int
        Page size, clamped to 1..500.
    cursor : str, optional
        The ``next`` of the previous page, opaque to clients.  It holds the
        sort key and the last row's sort value and id, so pages are stable
        while runs are added; use it with the same filters and sort.

    Raises
    ------
    ValueError
        For an unknown status or sort key, or a cursor that is malformed or
        was made for another sort.
    """
    key, descending = _parse_sort(sort)
    limit = max(1, min(int(limit), MAX_LIST_LIMIT))
    column = _sort_column(session, key)
    query = select(Run).where(*_run_filters(session, status=status, tag=tag, sweep=sweep, q=q,
                                                          project=project))
    if cursor is not None:
        value, last_id = _decode_cursor(cursor, sort, key)
        query = query.where(_after(key, column, descending, value, last_id))
    query = query.order_by(*_order(key, column, descending)).limit(limit + 1)
    runs = list(session.scalars(query))
    if len(runs) <= limit:
        return runs, None
    last = runs[limit - 1]
    return runs[:limit], _encode_cursor(sort, getattr(last, key), last.id)


def _sort_column(session: Session, key: str) -> ColumnElement[Any]:
    """The column a sort orders by.  Names compare by code point on both databases: SQLite's BINARY order, and
    PostgreSQL's "C" collation (a database's default, ``en_US.utf8`` say, orders by its locale's rules)."""
    column = SORT_FIELDS[key]
    if key == "name" and session.get_bind().dialect.name == "postgresql":
        return column.collate("C")
    return column


def _parse_sort(sort: str) -> tuple[str, bool]:
    descending = sort.startswith("-")
    key = sort[1:] if descending else sort
    if key not in SORT_FIELDS:
        raise ValueError(f"cannot sort by {sort!r}: use one of {', '.join(SORT_FIELDS)}, with '-' for descending")
    return key, descending


def _run_filters(
    session: Session, *, status: str | None, tag: str | None, sweep: str | None, q: str | None, project: str | None
) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if project is not None:
        filters.append(Run.project == project)
    if status is not None:
        filters.append(Run.status == _choice(status, RUN_STATUSES, "status"))
    if tag is not None:
        filters.append(_has_tag(session, tag))
    if sweep is not None:
        filters.append(Run.sweep_id.in_(select(Sweep.id).where(or_(Sweep.id == sweep, Sweep.name == sweep))))
    if q:
        folded = fold(q)
        escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        filters.append(Run.name_folded.like(f"%{escaped}%", escape="\\"))
    return filters


def _has_tag(session: Session, tag: str) -> ColumnElement[bool]:
    """Runs whose tags hold ``tag``: JSONB containment on PostgreSQL, ``json_each`` on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return type_coerce(Run.tags, JSONB).contains([tag])
    elements = func.json_each(Run.tags).table_valued("value")
    return exists(select(1).select_from(elements).where(elements.c.value == tag))


def _order(key: str, column: ColumnElement[Any], descending: bool) -> list[Any]:
    if descending:
        order = [column.desc(), Run.id.desc()]
    else:
        order = [column.asc(), Run.id.asc()]
    if key in _NULLABLE_SORTS:
        order[0] = order[0].nulls_last()
    return order


def _after(
    key: str, column: ColumnElement[Any], descending: bool, value: Any, last_id: str
) -> ColumnElement[bool]:
    """Rows that come after ``(value, last_id)`` in the order of :func:`_order` (NULLs last)."""
    if value is None:  # inside the trailing group of NULLs: only the id order is left
        return and_(column.is_(None), Run.id < last_id if descending else Run.id > last_id)
    row, bound = tuple_(column, Run.id), tuple_(literal(value, column.type), literal(last_id, Run.id.type))
    after = row < bound if descending else row > bound
    return or_(after, column.is_(None)) if key in _NULLABLE_SORTS else after


def _encode_cursor(sort: str, value: Any, run_id: str) -> str:
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    raw = json.dumps([sort, value, run_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str, key: str) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, value, run_id = json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise _INVALID_CURSOR from None
    if made_for != sort:
        raise ValueError(f"this cursor belongs to sort={made_for!r}, not sort={sort!r}")
    if not is_id(run_id):
        raise _INVALID_CURSOR
    return _cursor_value(key, value), run_id


_INVALID_CURSOR = ValueError("invalid cursor: pass the 'next' value of the previous page unchanged")
_INT32 = 2**31 - 1


def _cursor_value(key: str, value: Any) -> Any:
    """The cursor's sort value, checked against what its column can hold (a crafted cursor is a ValueError)."""
    if value is None:
        if key not in _NULLABLE_SORTS:
            raise _INVALID_CURSOR
        return None
    if key == "created_at":
        try:
            moment = dt.datetime.fromisoformat(value)
            if moment.tzinfo is None:  # a naive time would be read as local time
                raise _INVALID_CURSOR
            return moment.astimezone(dt.timezone.utc)
        except (TypeError, ValueError, OverflowError):
            raise _INVALID_CURSOR from None
    if key in ("name", "status"):
        if not isinstance(value, str) or "\x00" in value or len(value) > MAX_NAME_LENGTH:
            raise _INVALID_CURSOR
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _INVALID_CURSOR
    if key in ("epochs_done", "best_epoch"):
        if not isinstance(value, int) or abs(value) > _INT32:
            raise _INVALID_CURSOR
        return value
    if not math.isfinite(value) or abs(value) > 1e308:
        raise _INVALID_CURSOR
    return float(value)
