"""Data functions: everything the API, the CLI and the worker read or write.

Every function takes the session from its caller as the keyword ``session``
and neither opens a session nor commits; the caller owns the transaction::

    Session = make_sessionmaker(make_engine(settings.database_url))
    with Session() as s, s.begin():
        run = repo.create_run(session=s, spec=spec, name="xor", seed=0, tags=[], notes="", epochs_total=100)

Functions return ORM objects (readable after the commit: the session factory
keeps them from expiring) or plain values, as each docstring says.  Blobs
never come along by accident: weights and checkpoints live in their own
tables and are read only by the functions named for them, and a dataset's
``content`` is deferred (reading it without asking raises).

Bad arguments (an unknown status, sort field, cursor, metric field...) raise
``ValueError`` with a message fit to show a client.  Times are timezone-aware
UTC; the ``now`` parameters exist for tests and must be aware too.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import functools
import hashlib
import json
import math
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    ColumnElement,
    Integer,
    LargeBinary,
    String,
    Table,
    and_,
    any_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import InstrumentedAttribute, Session, undefer

from .models import (
    DATASET_TASKS,
    FINISHED_STATUSES,
    MAX_NAME_LENGTH,
    RUN_STATUSES,
    SUMMARY_FIELDS,
    SWEEP_METHODS,
    TOKEN_SCOPES,
    ApiToken,
    Checkpoint,
    Dataset,
    Epoch,
    Run,
    Sweep,
    UTCDateTime,
    Weights,
    new_id,
    utcnow,
)

#: Every API token starts with this, so a leaked one is easy to recognise (and to scan for).
TOKEN_PREFIX = "ty_"
#: ``verify_token`` writes ``last_used_at`` at most this often per token, not on every request.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)

DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 500

#: Numeric per-epoch metrics (nullable floats): the ones downsampling looks at.
EPOCH_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds")
#: Per-epoch lists (one value per layer).
EPOCH_LISTS = ("weight_norms", "grad_norms")
#: Every field ``get_epochs`` can return besides ``epoch``.
EPOCH_FIELDS = EPOCH_METRICS + EPOCH_LISTS

#: ``list_runs`` sort keys (prefix ``-`` for descending).
SORT_FIELDS: dict[str, InstrumentedAttribute[Any]] = {
    "created_at": Run.created_at,
    "name": Run.name,
    "status": Run.status,
    "epochs_done": Run.epochs_done,
    **{field: getattr(Run, field) for field in SUMMARY_FIELDS},
}
_NULLABLE_SORTS = frozenset(SUMMARY_FIELDS)

_DIALECT_INSERTS: dict[str, Callable[[Table], Any]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


# --------------------------------------------------------------------------- helpers


def _now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, not {now!r}")
    return now


def _utc(value: dt.datetime) -> ColumnElement[dt.datetime]:
    """A bound datetime with the models' UTC type (a bare literal would skip its conversion)."""
    return literal(value, UTCDateTime())


def _insert(session: Session, table: Table) -> Any:
    """The dialect's own INSERT construct for ``table`` (it has ``on_conflict_do_nothing`` and ``..._do_update``)."""
    dialect = session.get_bind().dialect.name
    try:
        return _DIALECT_INSERTS[dialect](table)
    except KeyError:
        raise ValueError(f"storage supports {', '.join(_DIALECT_INSERTS)}, not {dialect}") from None


def _reload(session: Session, run_id: str) -> Run | None:
    """The run as the database now has it (after a bulk UPDATE that bypassed the identity map)."""
    return session.get(Run, run_id, populate_existing=True)


def _name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"name is longer than {MAX_NAME_LENGTH} characters")
    return name


def _tags(tags: Iterable[str]) -> list[str]:
    """The tags as a list of strings, duplicates dropped, order kept."""
    if isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError("tags must be a list of strings")
    return list(dict.fromkeys(tags))


def _choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None for None, NaN and infinities (which neither SQLite nor JSONB can store)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- runs


def create_run(
    *,
    session: Session,
    spec: dict[str, Any],
    name: str,
    seed: int,
    tags: list[str],
    notes: str,
    epochs_total: int,
    sweep_id: str | None = None,
) -> Run:
    """Add a queued run and flush it (so a bad ``sweep_id`` fails here); returns the new :class:`Run`."""
    now = utcnow()
    run = Run(
        id=new_id(),
        name=_name(name),
        status="queued",
        spec=spec,
        seed=seed,
        sweep_id=sweep_id,
        tags=_tags(tags),
        notes=notes,
        created_at=now,
        updated_at=now,
        attempts=0,
        cancel_requested=False,
        epochs_done=0,
        epochs_total=epochs_total,
    )
    session.add(run)
    session.flush()
    return run


def get_run(*, session: Session, run_id: str) -> Run | None:
    """The run with this id, or None."""
    return session.get(Run, run_id)


def get_runs(*, session: Session, run_ids: Sequence[str]) -> list[Run]:
    """The runs with these ids, in one query, in the order of ``run_ids``; ids that are no run are left out."""
    if not run_ids:
        return []
    found = {run.id: run for run in session.scalars(select(Run).where(Run.id.in_(list(run_ids))))}
    return [found[run_id] for run_id in dict.fromkeys(run_ids) if run_id in found]


def update_run(
    *,
    session: Session,
    run_id: str,
    name: str | None = None,
    tags: list[str] | None = None,
    notes: str | None = None,
) -> Run | None:
    """Change a run's name, tags or notes (None leaves a field as it is); None if there is no such run."""
    run = session.get(Run, run_id)
    if run is None:
        return None
    if name is not None:
        run.name = _name(name)
    if tags is not None:
        run.tags = _tags(tags)
    if notes is not None:
        run.notes = notes
    session.flush()
    return run


def delete_run(*, session: Session, run_id: str) -> bool:
    """Delete a run with its epochs, weights and checkpoint (``ON DELETE CASCADE``); whether it existed.

    A worker still training it finds out at its next flush: ``renew_lease``
    says it no longer holds the run, and ``write_epochs`` raises ``LookupError``.
    """
    return session.execute(delete(Run).where(Run.id == run_id)).rowcount == 1


def request_cancel(*, session: Session, run_id: str, now: dt.datetime | None = None) -> Run | None:
    """Ask for a run to stop; returns the run as it now is, or None if there is no such run.

    A queued run is cancelled at once (``finished_at`` set; a worker that
    receives its message later finds nothing to claim).  A running run gets
    ``cancel_requested``; its worker sees it through :func:`renew_lease` and
    ends the run with :func:`finish_run`.  A finished run is left unchanged.
    Each change is one conditional UPDATE, so a claim racing with the cancel
    leaves either a cancelled run or a running run with the flag set.
    """
    now = _now(now)
    cancelled = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "queued")
        .values(status="cancelled", cancel_requested=True, finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if cancelled.rowcount == 0:
        session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == "running", ~Run.cancel_requested)
            .values(cancel_requested=True, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return _reload(session, run_id)


def _claimable(now: dt.datetime) -> ColumnElement[bool]:
    """Runs a worker may take: queued, or running under an expired lease; never one whose cancel was asked for."""
    return and_(
        ~Run.cancel_requested,
        or_(Run.status == "queued", and_(Run.status == "running", Run.lease_expires_at < _utc(now))),
    )


def claim_run(
    *, session: Session, run_id: str, worker: str, lease_seconds: float, now: dt.datetime | None = None
) -> Run | None:
    """Take a run for ``worker`` with one conditional UPDATE; the run if this call took it, else None.

    Matches a queued run, or a running run whose lease expired before ``now``
    (its worker died), and not one whose cancel was requested.  Sets status
    ``running``, ``worker``, ``attempts + 1``, ``started_at`` (first claim
    only) and a lease until ``now + lease_seconds``.  Concurrent claims of one
    run cannot both succeed: on PostgreSQL the second UPDATE waits for the
    first's row lock and then re-checks the condition, on SQLite writes are
    serialised.  ``worker`` should be unique per worker process (host, pid and
    a random part), since leases are renewed by that name.
    """
    if lease_seconds <= 0:
        raise ValueError("lease_seconds must be positive")
    now = _now(now)
    return session.scalars(
        update(Run)
        .where(Run.id == run_id, _claimable(now))
        .values(
            status="running",
            worker=worker,
            attempts=Run.attempts + 1,
            started_at=func.coalesce(Run.started_at, _utc(now)),
            lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
            updated_at=now,
        )
        .returning(Run)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).first()


@dataclass(frozen=True)
class Lease:
    """What :func:`renew_lease` found.

    Attributes
    ----------
    held : bool
        The worker still holds the run (it is running under that worker) and its lease was extended.
        False: stop training and write nothing more (the run was finished, deleted or taken over).
    cancel_requested : bool
        Someone asked for the run to stop: finish it as ``cancelled``.
    """

    held: bool
    cancel_requested: bool


def renew_lease(
    *, session: Session, run_id: str, worker: str, lease_seconds: float, now: dt.datetime | None = None
) -> Lease:
    """Extend ``worker``'s lease on a running run to ``now + lease_seconds``; see :class:`Lease`.

    A worker whose lease ran out may still renew it as long as no other
    worker has claimed the run in the meantime.
    """
    if lease_seconds <= 0:
        raise ValueError("lease_seconds must be positive")
    now = _now(now)
    row = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.worker == worker, Run.status == "running")
        .values(lease_expires_at=now + dt.timedelta(seconds=lease_seconds), updated_at=now)
        .returning(Run.cancel_requested)
        .execution_options(synchronize_session=False)
    ).first()
    return Lease(held=row is not None, cancel_requested=bool(row and row[0]))


def finish_run(
    *,
    session: Session,
    run_id: str,
    status: str,
    error: str | None = None,
    summary: Mapping[str, float | int | None] | None = None,
    worker: str | None = None,
    now: dt.datetime | None = None,
) -> Run | None:
    """End a run: final ``status``, ``error`` message, summary metrics; ``finished_at`` set, lease cleared.

    Parameters
    ----------
    status : {"succeeded", "failed", "cancelled"}
    summary : mapping, optional
        Values for any of :data:`~trainyard.service.storage.models.SUMMARY_FIELDS`
        (non-finite floats are stored as null).
    worker : str, optional
        Given (the worker's own call): only if the run is running under this
        worker.  None (the reconciler, an admin): any run not yet finished,
        queued or running.

    Returns
    -------
    Run or None
        The finished run, or None if nothing matched (no such run, already
        finished, or held by another worker); a finished run is never changed.
    """
    _choice(status, FINISHED_STATUSES, "status")
    values = _summary_values(summary or {})
    now = _now(now)
    condition = (
        and_(Run.status == "running", Run.worker == worker)
        if worker is not None
        else Run.status.in_(("queued", "running"))
    )
    return session.scalars(
        update(Run)
        .where(Run.id == run_id, condition)
        .values(status=status, error=error, finished_at=now, lease_expires_at=None, updated_at=now, **values)
        .returning(Run)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).first()


def _summary_values(summary: Mapping[str, float | int | None]) -> dict[str, float | int | None]:
    unknown = sorted(set(summary) - set(SUMMARY_FIELDS))
    if unknown:
        raise ValueError(f"unknown summary field(s) {', '.join(unknown)}: use {', '.join(SUMMARY_FIELDS)}")
    return {key: (value if key == "best_epoch" or value is None else _finite(value)) for key, value in summary.items()}


def stale_runs(*, session: Session, now: dt.datetime | None = None, queued_for: float | None = 600.0) -> list[str]:
    """Ids of runs the reconciler should look at, oldest first.

    - running runs whose lease expired before ``now`` (their worker died or
      hangs): re-enqueue them, except those with ``cancel_requested``, which no
      worker may claim; finish those as ``cancelled``;
    - queued runs created more than ``queued_for`` seconds before ``now``
      (their message may have been lost): re-enqueue them; a duplicate message
      is harmless, the second delivery finds nothing to claim.  None leaves
      queued runs out.
    """
    now = _now(now)
    conditions = [and_(Run.status == "running", Run.lease_expires_at < _utc(now))]
    if queued_for is not None:
        conditions.append(and_(Run.status == "queued", Run.created_at < _utc(now - dt.timedelta(seconds=queued_for))))
    return list(session.scalars(select(Run.id).where(or_(*conditions)).order_by(Run.created_at, Run.id)))


# --------------------------------------------------------------------------- listing runs


def list_runs(
    *,
    session: Session,
    status: str | None = None,
    tag: str | None = None,
    sweep_id: str | None = None,
    q: str | None = None,
    sort: str = "-created_at",
    limit: int = DEFAULT_LIST_LIMIT,
    cursor: str | None = None,
) -> tuple[list[Run], str | None]:
    """One page of runs, and the cursor of the next page (None on the last).

    Parameters
    ----------
    status, tag, sweep_id
        Keep runs with this status, carrying this tag, of this sweep.
    q : str, optional
        Keep runs whose name contains ``q``, ignoring case (ASCII case on SQLite).
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
    column = SORT_FIELDS[key]
    query = select(Run).where(*_run_filters(session, status=status, tag=tag, sweep_id=sweep_id, q=q))
    if cursor is not None:
        value, last_id = _decode_cursor(cursor, sort, key)
        query = query.where(_after(key, column, descending, value, last_id))
    query = query.order_by(*_order(key, column, descending)).limit(limit + 1)
    runs = list(session.scalars(query))
    if len(runs) <= limit:
        return runs, None
    last = runs[limit - 1]
    return runs[:limit], _encode_cursor(sort, getattr(last, key), last.id)


def _parse_sort(sort: str) -> tuple[str, bool]:
    descending = sort.startswith("-")
    key = sort[1:] if descending else sort
    if key not in SORT_FIELDS:
        raise ValueError(f"cannot sort by {sort!r}: use one of {', '.join(SORT_FIELDS)}, with '-' for descending")
    return key, descending


def _run_filters(
    session: Session, *, status: str | None, tag: str | None, sweep_id: str | None, q: str | None
) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if status is not None:
        filters.append(Run.status == _choice(status, RUN_STATUSES, "status"))
    if tag is not None:
        filters.append(_has_tag(session, tag))
    if sweep_id is not None:
        filters.append(Run.sweep_id == sweep_id)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        filters.append(Run.name.ilike(f"%{escaped}%", escape="\\"))
    return filters


def _has_tag(session: Session, tag: str) -> ColumnElement[bool]:
    """Runs whose tags hold ``tag``: JSONB containment on PostgreSQL, ``json_each`` on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return type_coerce(Run.tags, JSONB).contains([tag])
    elements = func.json_each(Run.tags).table_valued("value")
    return exists(select(1).select_from(elements).where(elements.c.value == tag))


def _order(key: str, column: InstrumentedAttribute[Any], descending: bool) -> list[Any]:
    if descending:
        order = [column.desc(), Run.id.desc()]
    else:
        order = [column.asc(), Run.id.asc()]
    if key in _NULLABLE_SORTS:
        order[0] = order[0].nulls_last()
    return order


def _after(
    key: str, column: InstrumentedAttribute[Any], descending: bool, value: Any, last_id: str
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
    if not (isinstance(run_id, str) and _RUN_ID.fullmatch(run_id)):
        raise _INVALID_CURSOR
    return _cursor_value(key, value), run_id


_INVALID_CURSOR = ValueError("invalid cursor: pass the 'next' value of the previous page unchanged")
_RUN_ID = re.compile(r"[0-9a-f]{32}")
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


# --------------------------------------------------------------------------- epochs


def write_epochs(*, session: Session, run_id: str, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert epochs of a run in one batch, skipping epochs already written; returns how many were new.

    Each row has ``epoch`` (an int) and any of :data:`EPOCH_FIELDS` and
    ``recorded_at`` (default now); missing metrics are null, missing norm lists
    empty; NaN and infinite values are stored as null.  A replayed epoch is
    neither a second row nor an error (``INSERT ... ON CONFLICT DO
    NOTHING``): the first write wins.  ``runs.epochs_done`` becomes the
    highest epoch stored for the run.

    Raises
    ------
    LookupError
        If there is no such run (it may have been deleted while training).
    ValueError
        For a row with an unknown key or without an int ``epoch``.
    """
    now = utcnow()
    values = [_epoch_values(run_id, row, now) for row in rows]
    highest = max((row["epoch"] for row in values), default=0)
    touched = session.execute(  # first, so the run's row is locked and a missing run found before any insert
        update(Run)
        .where(Run.id == run_id)
        .values(updated_at=now, epochs_done=case((Run.epochs_done < highest, highest), else_=Run.epochs_done))
        .execution_options(synchronize_session=False)
    )
    if touched.rowcount == 0:
        raise LookupError(f"no run with id {run_id!r}")
    if not values:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        return _write_epochs_unnest(session, run_id, values)
    insert = _insert(session, Epoch.__table__).on_conflict_do_nothing(index_elements=["run_id", "epoch"])
    return len(session.execute(insert.returning(Epoch.__table__.c.epoch), values).all())


_EPOCH_COLUMNS = ("epoch", "recorded_at", *EPOCH_METRICS, *EPOCH_LISTS)
#: ``write_epochs``'s statement on PostgreSQL (psycopg placeholders): one array per column, unnested.
_EPOCH_UNNEST = (
    f"INSERT INTO epochs (run_id, {', '.join(_EPOCH_COLUMNS)}) SELECT %(run_id)s, * FROM unnest("
    + ", ".join(
        ["%(epoch)b::integer[]", "%(recorded_at)b::timestamptz[]"]
        + [f"%({name})b::double precision[]" for name in EPOCH_METRICS]
        + [f"%({name})b::text[]::jsonb[]" for name in EPOCH_LISTS]
    )
    + ") ON CONFLICT (run_id, epoch) DO NOTHING RETURNING epoch"
)


def _write_epochs_unnest(session: Session, run_id: str, values: list[dict[str, Any]]) -> int:
    """The insert of :func:`write_epochs` on PostgreSQL: one ``INSERT ... SELECT FROM unnest(...)``.

    A multi-row ``VALUES`` list with twelve parameters per row is a new
    statement text for every batch size, which psycopg parses anew each time
    (about 10,000 rows/s); here the text is constant, with one array
    parameter per column sent in binary format on the DBAPI cursor of the
    session's connection (inside its transaction): about three times faster.
    """
    params: dict[str, Any] = {"run_id": run_id}
    params.update({name: [row[name] for row in values] for name in ("epoch", "recorded_at", *EPOCH_METRICS)})
    params.update({name: [json.dumps(row[name]) for row in values] for name in EPOCH_LISTS})
    with contextlib.closing(session.connection().connection.cursor(binary=True)) as cursor:
        cursor.execute(_EPOCH_UNNEST, params)
        return len(cursor.fetchall())


_EPOCH_ROW_KEYS = frozenset(("epoch", "recorded_at", *EPOCH_FIELDS))


def _epoch_values(run_id: str, row: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    unknown = sorted(set(row) - _EPOCH_ROW_KEYS)
    if unknown:
        allowed = ", ".join(("epoch", "recorded_at", *EPOCH_FIELDS))
        raise ValueError(f"unknown epoch field(s) {', '.join(unknown)}: use {allowed}")
    epoch = row.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer):
        raise ValueError(f"every epoch row needs an int 'epoch', not {epoch!r}")
    recorded_at = row.get("recorded_at") or now
    if recorded_at.tzinfo is None or recorded_at.utcoffset() is None:
        raise ValueError(f"recorded_at must be timezone-aware, not {recorded_at!r}")
    values: dict[str, Any] = {"run_id": run_id, "epoch": int(epoch), "recorded_at": recorded_at}
    values.update({field: _finite(row.get(field)) for field in EPOCH_METRICS})
    values.update({field: [_finite(x) for x in _or_empty(row.get(field))] for field in EPOCH_LISTS})
    return values


def _or_empty(values: Iterable[Any] | None) -> Iterable[Any]:
    return () if values is None else values


def get_epochs(
    *,
    session: Session,
    run_id: str,
    since: int = 0,
    fields: Sequence[str] | None = None,
    max_points: int | None = None,
) -> list[dict[str, Any]]:
    """The epochs of a run after epoch ``since``, in order, as dicts ``{"epoch": n, field: value, ...}``.

    Parameters
    ----------
    since : int
        Only epochs numbered above this (0: all).
    fields : sequence of str, optional
        The fields to return, in this order, from :data:`EPOCH_FIELDS` (default: all).
    max_points : int, optional
        At most this many epochs (at least 2), chosen so the curves keep their shape:

        - with ``max_points`` epochs or fewer, all are returned;
        - otherwise the first and the last epoch are kept, and the ``m``
          epochs between them are split into ``B`` consecutive buckets of
          (nearly) equal size: the ``i``-th of them (from 0) goes to bucket
          ``floor(i * B / m)``.  In every bucket and for every requested
          numeric field (:data:`EPOCH_METRICS`), the epoch holding the
          field's minimum and the epoch holding its maximum are kept (the
          earliest one on ties; nulls are ignored), so a one-epoch spike
          always survives.  With no numeric field requested, each bucket keeps
          its first epoch;
        - ``B`` is first ``min(m, max(1, (max_points - 2) // (2 * F)))``,
          with ``F`` the number of numeric fields asked for (``2 * F`` counts
          as 1 when there are none): a count that never overflows, since a
          bucket keeps at most ``2 * F`` epochs (unless even one bucket is
          too many: then only the first and last epoch are returned).  If
          that keeps ``k < max_points`` epochs, ``B * (max_points - 2) // (k - 2)``
          buckets (at most ``m``) are tried once, and used if they keep at
          most ``max_points`` epochs.  Every kept epoch carries all requested
          fields.

    Raises
    ------
    ValueError
        For an unknown field or a ``max_points`` below 2.

    Speed: the numeric fields come from one query as columns (on PostgreSQL
    packed server-side into one ``bytea`` of binary float64, which numpy reads
    without a Python object per value), the buckets are computed with numpy,
    and Python objects are made only for the epochs returned.  List fields,
    when asked for, take a second query for the returned epochs only.
    """
    names = _epoch_fields(fields)
    if max_points is not None and max_points < 2:
        raise ValueError("max_points must be at least 2")
    metrics = [name for name in names if name in EPOCH_METRICS]
    epochs, columns = _metric_columns(session, [run_id], since, metrics)[run_id]
    downsampled = max_points is not None and len(epochs) > max_points
    if downsampled:
        kept = downsample([columns[name] for name in metrics], len(epochs), max_points)
        epochs, columns = epochs[kept], {name: values[kept] for name, values in columns.items()}
    numbers = epochs.tolist()
    values: dict[str, list[Any]] = {name: _nulls(columns[name].tolist()) for name in metrics}
    lists = [name for name in names if name in EPOCH_LISTS]
    if lists:
        values.update(_list_columns(session, run_id, since, lists, numbers if downsampled else None, numbers))
    rows: list[dict[str, Any]] = [{"epoch": number} for number in numbers]
    for name in names:  # column by column: several times faster than dict(zip(keys, row)) per row
        for row, value in zip(rows, values[name]):
            row[name] = value
    return rows


def get_curves(
    *, session: Session, run_ids: Sequence[str], fields: Sequence[str], max_points: int | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """The numeric fields of several runs' epochs as columns: ``{run_id: {"epoch": ints, field: floats}}``.

    What a chart draws, for many runs at once: in the order of ``run_ids``,
    each run's epoch numbers (int64) and each field of ``fields`` (from
    :data:`EPOCH_METRICS`; float64, NaN for null), downsampled per run to
    ``max_points`` as :func:`get_epochs` describes.  On PostgreSQL one query
    serves all runs.  A run without epochs (or no such run) has empty arrays.

    Raises
    ------
    ValueError
        For a field that is not a numeric epoch field, or a ``max_points`` below 2.
    """
    metrics = _epoch_fields(fields)
    lists = [name for name in metrics if name not in EPOCH_METRICS]
    if lists:
        raise ValueError(f"curves hold numeric fields only, not {', '.join(lists)}")
    if max_points is not None and max_points < 2:
        raise ValueError("max_points must be at least 2")
    curves: dict[str, dict[str, np.ndarray]] = {}
    for run_id, (epochs, columns) in _metric_columns(session, run_ids, 0, metrics).items():
        if max_points is not None and len(epochs) > max_points:
            kept = downsample([columns[name] for name in metrics], len(epochs), max_points)
            epochs, columns = epochs[kept], {name: values[kept] for name, values in columns.items()}
        curves[run_id] = {"epoch": epochs, **columns}
    return curves


def _epoch_fields(fields: Sequence[str] | None) -> tuple[str, ...]:
    if fields is None:
        return EPOCH_FIELDS
    if isinstance(fields, str):
        raise ValueError("fields must be a list of field names")
    unknown = [name for name in fields if name not in EPOCH_FIELDS]
    if unknown:
        raise ValueError(f"unknown epoch field(s) {', '.join(map(repr, unknown))}: use {', '.join(EPOCH_FIELDS)}")
    return tuple(dict.fromkeys(fields))


def _metric_columns(
    session: Session, run_ids: Sequence[str], since: int, metrics: Sequence[str]
) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Per run: the epoch numbers (int64) and the numeric fields (float64, NaN for null), by epoch.

    A run without epochs maps to empty arrays.  The query runs on the DBAPI
    cursor of the session's connection (inside its transaction): SQLAlchemy's
    result rows would cost more than the query itself.  On PostgreSQL one
    query serves every run: the database packs each run's columns into one
    ``bytea`` of fixed-size records (``int4`` epoch, ``float8`` per metric,
    NULL as NaN), fetched in binary format (in text format it is hex-encoded
    and decoded again, which doubles the time) and read by numpy without a
    Python object per value; ``string_agg`` has no ORDER BY, so there is no
    sort in SQL: numpy sorts by epoch.  On SQLite (in-process, no round
    trips) the rows of each run are fetched and transposed.
    """
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    sql, positions = _metric_query(connection.dialect, tuple(metrics))
    empty = np.empty(0, dtype=np.int64), {name: np.empty(0) for name in metrics}
    found: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    cursor = connection.connection.cursor(binary=True) if postgres else connection.connection.cursor()
    with contextlib.closing(cursor):
        if postgres:
            cursor.execute(sql, {"run_ids": list(run_ids), "since": since})
            record = np.dtype([("epoch", ">i4"), *((name, ">f8") for name in metrics)])
            for run_id, packed in cursor.fetchall():
                array = np.frombuffer(packed or b"", dtype=record)
                array = array[np.argsort(array["epoch"], kind="stable")]
                values = {name: array[name].astype(np.float64) for name in metrics}
                found[run_id] = array["epoch"].astype(np.int64), values
        else:
            for run_id in run_ids:
                params = {"run_id": run_id, "since": since}
                cursor.execute(sql, [params[name] for name in positions])
                columns = list(zip(*cursor.fetchall()))
                if columns:
                    epochs = np.array(columns[0], dtype=np.int64)
                    values = {name: np.array(col, dtype=np.float64) for name, col in zip(metrics, columns[1:])}
                    found[run_id] = epochs, values
    return {run_id: found.get(run_id, empty) for run_id in run_ids}


@functools.lru_cache(maxsize=128)
def _metric_query(dialect: Dialect, metrics: tuple[str, ...]) -> tuple[str, tuple[str, ...] | None]:
    """The SQL of :func:`_metric_columns` for one dialect and field list, compiled once.

    Returns the SQL and, for a positional paramstyle (SQLite's), the names of
    its parameters in order.  PostgreSQL's takes ``run_ids`` (a list) and
    ``since``; SQLite's one ``run_id`` and ``since``.
    """
    table = Epoch.__table__
    since = table.c.epoch > bindparam("since", type_=Integer)
    if dialect.name == "postgresql":
        packed = func.int4send(table.c.epoch)
        for name in metrics:
            packed = packed.op("||")(func.float8send(func.coalesce(table.c[name], literal_column("'NaN'::float8"))))
        runs = table.c.run_id == any_(bindparam("run_ids", type_=postgresql.ARRAY(String)))
        aggregate = func.string_agg(type_coerce(packed, LargeBinary), literal_column("''::bytea"))
        query = select(table.c.run_id, aggregate).where(runs, since).group_by(table.c.run_id)
    else:
        run = table.c.run_id == bindparam("run_id", type_=String)
        query = select(table.c.epoch, *(table.c[name] for name in metrics)).where(run, since).order_by(table.c.epoch)
    compiled = query.compile(dialect=dialect)
    return str(compiled), (tuple(compiled.positiontup) if dialect.positional else None)


def _nulls(values: list[float]) -> list[float | None]:
    """NaN back to None (stored metrics are never NaN: ``write_epochs`` stores non-finite values as null)."""
    return [None if value != value else value for value in values]


def _list_columns(
    session: Session, run_id: str, since: int, names: Sequence[str], only: list[int] | None, order: list[int]
) -> dict[str, list[list[float | None]]]:
    """The list fields of the epochs in ``order`` (restricted in SQL to ``only`` when given).

    The database aggregates the rows into one JSON array ``[[epoch, list, ...], ...]``:
    one value to parse instead of one per row and field.
    """
    table = Epoch.__table__
    connection = session.connection()
    where = [table.c.run_id == run_id, table.c.epoch > since]
    if connection.dialect.name == "postgresql":
        aggregate = func.json_agg(func.json_build_array(table.c.epoch, *(table.c[name] for name in names)))
        if only is not None:
            where.append(table.c.epoch == any_(bindparam("only", only, type_=postgresql.ARRAY(Integer))))
    else:
        aggregate = func.json_group_array(func.json_array(table.c.epoch, *(func.json(table.c[name]) for name in names)))
        if only is not None:
            where.append(table.c.epoch.in_(only))
    items = connection.execute(select(type_coerce(aggregate, JSON)).where(*where)).scalar() or []
    by_epoch = {item[0]: item[1:] for item in items}
    missing = [[]] * len(names)  # an epoch deleted in between (with its run)
    return {name: [_floats(by_epoch.get(epoch, missing)[i]) for epoch in order] for i, name in enumerate(names)}


def _floats(values: Iterable[Any]) -> list[float | None]:
    """A norm list as floats: JSONB gives back a large integral float such as 1e300 as an int."""
    return [None if v is None else float(v) for v in values]


def downsample(series: Sequence[np.ndarray], n: int, max_points: int) -> np.ndarray:
    """Indices (ascending) of the rows to keep out of ``n``, by the rule of :func:`get_epochs`.

    Parameters
    ----------
    series : sequence of ndarray of shape (n,)
        The numeric fields, NaN where null.
    n : int
        Number of rows.
    max_points : int
        Most rows to keep, at least 2.
    """
    if n <= max_points:
        return np.arange(n)
    inner = [np.asarray(values, dtype=np.float64)[1 : n - 1] for values in series]
    interior = n - 2
    buckets = min(interior, max(1, (max_points - 2) // (2 * len(inner) or 1)))
    kept = _bucket_extremes(inner, n, buckets)
    if len(kept) > max_points:  # even one bucket is too many
        return _bucket_extremes(inner, n, 0)
    if len(kept) < max_points:
        more = min(interior, buckets * (max_points - 2) // max(1, len(kept) - 2))
        if more > buckets:
            trial = _bucket_extremes(inner, n, more)
            if len(trial) <= max_points:
                kept = trial
    return kept


def _bucket_extremes(inner: Sequence[np.ndarray], n: int, buckets: int) -> np.ndarray:
    """The first and last row, plus each bucket's first argmin and argmax of every series (its first row if none).

    ``inner`` holds the series without their first and last row; every pass is O(n), with no sort.
    """
    keep = np.zeros(n, dtype=bool)
    keep[[0, n - 1]] = True
    if buckets:
        m = n - 2
        bucket_of = (np.arange(m) * buckets) // m  # non-decreasing; no bucket is empty while buckets <= m
        starts = np.flatnonzero(np.r_[True, bucket_of[1:] != bucket_of[:-1]])
        if not inner:
            keep[starts + 1] = True
        for values in inner:
            for reduce in (np.fmin, np.fmax):
                extreme = reduce.reduceat(values, starts)  # NaN only for a bucket with no value at all
                hits = np.flatnonzero(values == extreme[bucket_of])
                if hits.size:
                    hit_buckets = bucket_of[hits]
                    keep[hits[np.r_[True, hit_buckets[1:] != hit_buckets[:-1]]] + 1] = True
    return np.flatnonzero(keep)


# --------------------------------------------------------------------------- weights and checkpoints


def write_weights(*, session: Session, run_id: str, epoch: int, data: bytes) -> bool:
    """Store the weights (``.npz`` bytes) of a run at an epoch; whether they were new (a replay keeps the first)."""
    insert = _insert(session, Weights.__table__).values(run_id=run_id, epoch=epoch, data=data, size_bytes=len(data))
    insert = insert.on_conflict_do_nothing(index_elements=["run_id", "epoch"])
    return session.execute(insert.returning(Weights.__table__.c.epoch)).first() is not None


def get_weights(*, session: Session, run_id: str, epoch: int | None = None) -> tuple[int, bytes] | None:
    """``(epoch, npz_bytes)`` of the given epoch, or of the latest when ``epoch`` is None; None if not stored."""
    query = select(Weights.epoch, Weights.data).where(Weights.run_id == run_id)
    query = query.order_by(Weights.epoch.desc()).limit(1) if epoch is None else query.where(Weights.epoch == epoch)
    row = session.execute(query).first()
    return None if row is None else (row.epoch, row.data)


def list_weight_epochs(*, session: Session, run_id: str) -> list[int]:
    """The epochs of a run that have stored weights, ascending (no blob is read)."""
    return list(session.scalars(select(Weights.epoch).where(Weights.run_id == run_id).order_by(Weights.epoch)))


def save_checkpoint(*, session: Session, run_id: str, epoch: int, data: bytes) -> bool:
    """Store a run's resumable state, replacing an older one; whether it was stored.

    The checkpoint never moves backwards: one for an epoch older than the
    stored one is ignored (False); the same epoch again overwrites.
    """
    table = Checkpoint.__table__
    insert = _insert(session, table).values(run_id=run_id, epoch=epoch, data=data, updated_at=utcnow())
    upsert = insert.on_conflict_do_update(
        index_elements=["run_id"],
        set_={"epoch": insert.excluded.epoch, "data": insert.excluded.data, "updated_at": insert.excluded.updated_at},
        where=insert.excluded.epoch >= table.c.epoch,
    )
    return session.execute(upsert.returning(table.c.epoch)).first() is not None


def delete_checkpoint(*, session: Session, run_id: str) -> bool:
    """Drop a run's checkpoint; whether there was one."""
    return session.execute(delete(Checkpoint).where(Checkpoint.run_id == run_id)).rowcount == 1


def get_checkpoint(*, session: Session, run_id: str) -> tuple[int, bytes] | None:
    """``(epoch, bytes)`` of a run's checkpoint, or None."""
    row = session.execute(select(Checkpoint.epoch, Checkpoint.data).where(Checkpoint.run_id == run_id)).first()
    return None if row is None else (row.epoch, row.data)


# --------------------------------------------------------------------------- API tokens


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(*, session: Session, scope: str, name: str | None = None) -> tuple[str, ApiToken]:
    """A new token: ``(plaintext, row)``.  The plaintext (``ty_`` + 43 random characters) is shown once:
    only its SHA-256 is stored."""
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        id=new_id(),
        name=name,
        token_hash=_hash_token(plaintext),
        scope=_choice(scope, TOKEN_SCOPES, "scope"),
        created_at=utcnow(),
    )
    session.add(token)
    session.flush()
    return plaintext, token


def verify_token(*, session: Session, token: str, now: dt.datetime | None = None) -> ApiToken | None:
    """The active token with this plaintext, or None (unknown or revoked).

    Records the use in ``last_used_at``, at most once per :data:`LAST_USED_RESOLUTION`.
    """
    now = _now(now)
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == _hash_token(token), ApiToken.revoked_at.is_(None))
    ).first()
    if row is not None and (row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION):
        row.last_used_at = now
        session.flush()
    return row


def get_active_token(*, session: Session, token_id: str) -> ApiToken | None:
    """The token with this id if it is not revoked, else None (a dashboard session re-checks its token so)."""
    token = session.get(ApiToken, token_id)
    return token if token is not None and token.active else None


def list_tokens(*, session: Session) -> list[ApiToken]:
    """Every token, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)))


def revoke_token(*, session: Session, token_id: str, now: dt.datetime | None = None) -> bool:
    """Revoke a token; False if there is no such token.  Revoking twice keeps the first ``revoked_at``."""
    token = session.get(ApiToken, token_id)
    if token is None:
        return False
    if token.revoked_at is None:
        token.revoked_at = _now(now)
        session.flush()
    return True


# --------------------------------------------------------------------------- datasets and sweeps


def create_dataset(
    *,
    session: Session,
    name: str,
    filename: str,
    content: bytes,
    target: str,
    task: str,
    n_samples: int,
    n_features: int,
    classes: list[Any] | None = None,
) -> Dataset:
    """Store an uploaded CSV (validated by the caller) with its SHA-256 and size."""
    dataset = Dataset(
        id=new_id(),
        name=_name(name),
        filename=filename,
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        size_bytes=len(content),
        target=target,
        task=_choice(task, DATASET_TASKS, "task"),
        n_samples=n_samples,
        n_features=n_features,
        classes=classes,
        created_at=utcnow(),
    )
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(*, session: Session, dataset_id: str, with_content: bool = False) -> Dataset | None:
    """The dataset, or None.  Its ``content`` is loaded only with ``with_content=True`` (else reading it raises)."""
    query = select(Dataset).where(Dataset.id == dataset_id)
    if with_content:
        query = query.options(undefer(Dataset.content))
    return session.scalars(query).first()


def list_datasets(*, session: Session) -> list[Dataset]:
    """Every uploaded dataset, newest first, without its content."""
    return list(session.scalars(select(Dataset).order_by(Dataset.created_at.desc(), Dataset.id.desc())))


def create_sweep(
    *, session: Session, name: str, method: str, base_spec: dict[str, Any], space: dict[str, Any]
) -> Sweep:
    """Store a sweep (its runs are created with ``create_run(..., sweep_id=sweep.id)``)."""
    sweep = Sweep(
        id=new_id(),
        name=_name(name),
        method=_choice(method, SWEEP_METHODS, "method"),
        base_spec=base_spec,
        space=space,
        created_at=utcnow(),
    )
    session.add(sweep)
    session.flush()
    return sweep


def get_sweep(*, session: Session, sweep_id: str) -> Sweep | None:
    """The sweep, or None."""
    return session.get(Sweep, sweep_id)


def list_sweeps(*, session: Session, limit: int = 100) -> list[Sweep]:
    """The newest ``limit`` sweeps, newest first."""
    return list(session.scalars(select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id).limit(limit)))


def sweep_runs(*, session: Session, sweep_ids: Sequence[str]) -> dict[str, list[Run]]:
    """The runs of each sweep (one query), in the order of its points: their names are numbered."""
    by_sweep: dict[str, list[Run]] = {sweep_id: [] for sweep_id in sweep_ids}
    if by_sweep:
        query = select(Run).where(Run.sweep_id.in_(list(by_sweep))).order_by(Run.name, Run.id)
        for run in session.scalars(query):
            by_sweep[run.sweep_id].append(run)
    return by_sweep


# --------------------------------------------------------------------------- worker


def write_weights_many(*, session: Session, run_id: str, snapshots: Sequence[tuple[int, bytes]]) -> int:
    """Store several ``(epoch, npz_bytes)`` weights of a run in one batch; how many were new.

    :func:`write_weights` for a flush's worth of epochs: one multi-row
    ``INSERT ... ON CONFLICT DO NOTHING`` instead of a statement per epoch.
    """
    if not snapshots:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        return _write_weights_binary(session, run_id, snapshots)
    table = Weights.__table__
    values = [{"run_id": run_id, "epoch": epoch, "data": data, "size_bytes": len(data)} for epoch, data in snapshots]
    insert = _insert(session, table).on_conflict_do_nothing(index_elements=["run_id", "epoch"])
    return len(session.execute(insert.returning(table.c.epoch), values).all())


#: ``write_weights_many``'s statement on PostgreSQL: ``%b`` sends the bytes as they are.
_WEIGHTS_INSERT = (
    "INSERT INTO weights (run_id, epoch, data, size_bytes) VALUES (%s, %s, %b, %s) "
    "ON CONFLICT (run_id, epoch) DO NOTHING RETURNING epoch"
)


def _write_weights_binary(session: Session, run_id: str, snapshots: Sequence[tuple[int, bytes]]) -> int:
    """The insert of :func:`write_weights_many` on PostgreSQL, on the DBAPI cursor of the session's connection.

    SQLAlchemy sends ``bytea`` as hex text, twice the bytes, for the server
    to decode; psycopg's ``executemany`` sends one prepared statement per
    snapshot, pipelined, with the bytes in binary: about 1.7 times faster
    (``benchmarks/weights_insert.py``).
    """
    rows = [(run_id, epoch, data, len(data)) for epoch, data in snapshots]
    new = 0
    with contextlib.closing(session.connection().connection.cursor()) as cursor:
        cursor.executemany(_WEIGHTS_INSERT, rows, returning=True)
        while True:
            new += len(cursor.fetchall())
            if not cursor.nextset():
                return new


def delete_weights(*, session: Session, run_id: str, epochs: Iterable[int]) -> int:
    """Delete the weights of a run at these epochs (a superseded "best so far"); how many were deleted."""
    epochs = list(epochs)
    if not epochs:
        return 0
    return session.execute(delete(Weights).where(Weights.run_id == run_id, Weights.epoch.in_(epochs))).rowcount


def release_run(*, session: Session, run_id: str, worker: str, now: dt.datetime | None = None) -> bool:
    """Give a running run held by ``worker`` back to the queue (status ``queued``, no worker, no lease).

    A worker that is shutting down calls it after its last flush, so the next
    worker may claim the run at once instead of waiting for the lease to
    expire.  Returns whether the run was released (False: not held by ``worker``).
    """
    now = _now(now)
    released = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.worker == worker, Run.status == "running")
        .values(status="queued", worker=None, lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return released.rowcount == 1


@dataclass(frozen=True)
class Reconciled:
    """What :func:`reconcile` did: the runs to send to the queue again, and the runs it cancelled."""

    requeue: list[str]
    cancelled: list[str]


def reconcile(*, session: Session, queued_for: float, now: dt.datetime | None = None) -> Reconciled:
    """Recover the runs a dead worker or a lost message left behind; the caller sends ``requeue``.

    - A running run whose lease expired before ``now`` goes back to
      ``queued`` (its worker died or hangs: a worker that renews later finds
      it no longer holds the run), or to ``cancelled`` if its cancel was asked for.
    - A queued run untouched (``updated_at``) for ``queued_for`` seconds may
      have lost its message.  Its ``updated_at`` is set to ``now``, so it is
      sent again at most once per ``queued_for`` however long the queue's
      backlog; a duplicate message is harmless (nothing to claim).

    Each change is a conditional UPDATE, so several workers reconciling at
    once send at most a few duplicates.
    """
    now = _now(now)
    expired = and_(Run.status == "running", Run.lease_expires_at < _utc(now))
    cancelled = session.scalars(
        update(Run)
        .where(expired, Run.cancel_requested)
        .values(status="cancelled", finished_at=now, lease_expires_at=None, updated_at=now)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).all()
    requeued = session.scalars(
        update(Run)
        .where(expired, ~Run.cancel_requested)
        .values(status="queued", worker=None, lease_expires_at=None, updated_at=now)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).all()
    forgotten = session.scalars(
        update(Run)
        .where(Run.status == "queued", Run.updated_at < _utc(now - dt.timedelta(seconds=queued_for)))
        .values(updated_at=now)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).all()
    return Reconciled(requeue=list(dict.fromkeys([*requeued, *forgotten])), cancelled=list(cancelled))
