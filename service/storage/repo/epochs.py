"""Per-epoch metrics: the worker's batched insert, and the reads behind the API's epochs and the charts.

Besides the built-in metrics (columns of ``epochs``), a tracked run has custom
metrics by name (rows of ``metrics``, their names in ``runs.metric_keys``):
every read here takes their names wherever it takes a numeric field's, and
returns them aligned on the run's epochs (null where an epoch has none).

These are hot paths: on PostgreSQL the insert and the numeric reads go through the DBAPI cursor of the
session's connection (inside its transaction) with binary parameters or results, as each function says.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Integer,
    LargeBinary,
    String,
    and_,
    any_,
    bindparam,
    case,
    func,
    literal_column,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from trainyard.service.storage.models import Epoch, Metric, Run, utcnow
from trainyard.service.storage.repo._common import _finite, _insert
from trainyard.service.storage.repo.downsampling import downsample

#: Numeric per-epoch metrics (nullable floats): the ones downsampling looks at.
EPOCH_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds")
#: Per-epoch lists (one value per layer).
EPOCH_LISTS = ("weight_norms", "grad_norms")
#: Every built-in field ``get_epochs`` can return besides ``epoch``.
EPOCH_FIELDS = EPOCH_METRICS + EPOCH_LISTS

#: What a custom metric's name looks like (``bleu``, ``val/f1``, ``eval.top-5``): a regular expression.
METRIC_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-/]{0,63}$"
_METRIC_NAME = re.compile(METRIC_NAME_PATTERN)
#: Names no custom metric may take: the epoch's own fields.
RESERVED_METRIC_NAMES = frozenset(("epoch", "recorded_at", *EPOCH_FIELDS))
#: Most custom metric names one run may have.
MAX_CUSTOM_METRICS = 32


def is_metric_name(name: object) -> bool:
    """Whether ``name`` may name a custom metric: it fits :data:`METRIC_NAME_PATTERN` and is not reserved."""
    return isinstance(name, str) and _METRIC_NAME.fullmatch(name) is not None and name not in RESERVED_METRIC_NAMES


def metric_keys(*, session: Session, run_id: str) -> list[str]:
    """A run's custom metric names, in the order first logged (none for a trained run, or no such run)."""
    return list(session.scalar(select(Run.metric_keys).where(Run.id == run_id)) or [])


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
    statement text for every batch size, which psycopg parses anew each time;
    here the text is constant, with one array parameter per column sent in
    binary format on the DBAPI cursor of the session's connection (inside its
    transaction).  ``benchmarks/ingest.py`` compares the two.
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
    until: int | None = None,
    fields: Sequence[str] | None = None,
    max_points: int | None = None,
) -> list[dict[str, Any]]:
    """The epochs of a run after epoch ``since``, in order, as dicts ``{"epoch": n, field: value, ...}``.

    Parameters
    ----------
    since : int
        Only epochs numbered above this (0: all).
    until : int, optional
        Only epochs numbered up to this (a page of :func:`get_epoch_page`).
    fields : sequence of str, optional
        The fields to return, in this order: from :data:`EPOCH_FIELDS`, or
        custom metric names (default: all, the run's custom metrics last).
    max_points : int, optional
        ``min(n, max_points)`` of the ``n`` epochs (``max_points`` at least
        2), chosen so the curves keep their shape:

        - with ``max_points`` epochs or fewer, all are returned;
        - otherwise the first and the last epoch are kept, and the ``m``
          epochs between them are split into ``B`` consecutive buckets of
          (nearly) equal size: the ``i``-th of them (from 0) goes to bucket
          ``floor(i * B / m)``.  In every bucket and for every requested
          numeric field (:data:`EPOCH_METRICS`), the epoch holding the
          field's minimum and the epoch holding its maximum are kept (the
          earliest one on ties; nulls are ignored), so a one-epoch spike
          always survives; a bucket where no field has a value (or none is
          asked for) keeps its first epoch;
        - ``B`` is first ``min(m, max(1, (max_points - 2) // (2 * F)))``,
          with ``F`` the number of numeric fields asked for (``2 * F`` counts
          as 1 when there are none): a count that never overflows, since a
          bucket keeps at most ``2 * F`` epochs (unless even one bucket is
          too many: then only the first and last epoch are kept).  While
          that keeps ``k < max_points`` epochs, ``B * (max_points - 2) // (k - 2)``
          buckets (at most ``m``) are tried, up to three times, and kept if
          they keep at most ``max_points`` epochs (a bucket's minimum and
          maximum are often one epoch, so ``k`` falls short);
        - the epochs still missing to make ``max_points`` are taken evenly
          spread among those not kept.  Every kept epoch carries all
          requested fields.

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
    names = _epoch_fields(fields) if fields is not None else (
        *EPOCH_FIELDS, *metric_keys(session=session, run_id=run_id))
    if max_points is not None and max_points < 2:
        raise ValueError("max_points must be at least 2")
    metrics = [name for name in names if name not in EPOCH_LISTS]
    epochs, columns = _metric_columns(session, [run_id], since, metrics, until)[run_id]
    downsampled = max_points is not None and len(epochs) > max_points
    if downsampled:
        kept = downsample([columns[name] for name in metrics], len(epochs), max_points)
        epochs, columns = epochs[kept], {name: values[kept] for name, values in columns.items()}
    numbers = epochs.tolist()
    values: dict[str, list[Any]] = {name: _nulls(columns[name].tolist()) for name in metrics}
    lists = [name for name in names if name in EPOCH_LISTS]
    if lists:
        values.update(_list_columns(session, run_id, since, until, lists, numbers if downsampled else None, numbers))
    rows: list[dict[str, Any]] = [{"epoch": number} for number in numbers]
    for name in names:  # column by column: several times faster than dict(zip(keys, row)) per row
        for row, value in zip(rows, values[name]):
            row[name] = value
    return rows


def epoch_value(*, session: Session, run_id: str, epoch: int, field: str) -> float | None:
    """One numeric field (:data:`EPOCH_METRICS`) of one epoch of a run; None if it has no value or no such epoch."""
    if field not in EPOCH_METRICS:
        raise ValueError(f"unknown numeric epoch field {field!r}: use {', '.join(EPOCH_METRICS)}")
    value = session.scalar(select(getattr(Epoch, field)).where(Epoch.run_id == run_id, Epoch.epoch == epoch))
    return None if value is None else float(value)


#: The largest epoch number (a spec's epochs stop at a million; the column is a 32-bit integer).
_LAST = 2**31 - 1


def epoch_layers(*, session: Session, run_id: str) -> int:
    """The most layers any epoch of the run has norms for (the export's ``weight_norm_<i>`` columns); 0 if none."""
    length = func.jsonb_array_length if session.get_bind().dialect.name == "postgresql" else func.json_array_length
    lengths = [func.max(length(getattr(Epoch, name))) for name in EPOCH_LISTS]
    return max((value or 0 for value in session.execute(select(*lengths).where(Epoch.run_id == run_id)).one()),
               default=0)


def get_epoch_page(
    *, session: Session, run_id: str, since: int = 0, fields: Sequence[str] | None = None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """At most ``limit`` epochs after ``since`` (as :func:`get_epochs` gives them), and the ``since`` of the next
    page: the last epoch returned when more follow, else None.

    The page's end is found on the ``(run_id, epoch)`` key before anything is read, so a page costs its own rows
    whatever the run's length.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    after = select(Epoch.epoch).where(Epoch.run_id == run_id, Epoch.epoch > since).order_by(Epoch.epoch)
    bounds = session.scalars(after.offset(limit - 1).limit(2)).all()  # the page's last epoch, and one past it
    until = bounds[0] if bounds else None
    rows = get_epochs(session=session, run_id=run_id, since=since, until=until, fields=fields)
    return rows, (until if len(bounds) == 2 else None)


def get_curves(
    *, session: Session, run_ids: Sequence[str], fields: Sequence[str], max_points: int | None = None, stride: int = 1
) -> dict[str, dict[str, np.ndarray]]:
    """The numeric fields of several runs' epochs as columns: ``{run_id: {"epoch": ints, field: floats}}``.

    What a chart draws, for many runs at once: in the order of ``run_ids``,
    each run's epoch numbers (int64) and each field of ``fields`` (from
    :data:`EPOCH_METRICS`, or custom metric names; float64, NaN for null), downsampled per run to
    ``max_points`` as :func:`get_epochs` describes.  On PostgreSQL one query
    serves all runs.  A run without epochs (or no such run) has empty arrays.
    With a ``stride`` above 1 only the epochs numbered a multiple of it are
    read (in SQL, before any downsampling): a bounded read of long runs whose
    epoch numbers still line up from run to run.

    Raises
    ------
    ValueError
        For a field that is not a numeric epoch field, a ``max_points`` below 2 or a ``stride`` below 1.
    """
    metrics = _epoch_fields(fields)
    lists = [name for name in metrics if name in EPOCH_LISTS]
    if lists:
        raise ValueError(f"curves hold numeric fields only, not {', '.join(lists)}")
    if max_points is not None and max_points < 2:
        raise ValueError("max_points must be at least 2")
    if stride < 1:
        raise ValueError("stride must be at least 1")
    curves: dict[str, dict[str, np.ndarray]] = {}
    for run_id, (epochs, columns) in _metric_columns(session, run_ids, 0, metrics, stride=stride).items():
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
    unknown = [name for name in fields if name not in EPOCH_FIELDS and not is_metric_name(name)]
    if unknown:
        raise ValueError(f"unknown epoch field(s) {', '.join(map(repr, unknown))}: use {', '.join(EPOCH_FIELDS)} "
                         "or custom metric names")
    return tuple(dict.fromkeys(fields))


def _metric_columns(
    session: Session, run_ids: Sequence[str], since: int, metrics: Sequence[str], until: int | None = None,
    stride: int = 1,
) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Per run: the epoch numbers (int64) and the numeric fields, built-in or custom (float64, NaN for null), by
    epoch (with a ``stride`` above 1, only the epochs numbered a multiple of it).

    The built-in fields come from :func:`_builtin_columns`; custom metrics
    from one more query of ``metrics``, placed on the run's epochs.
    """
    builtins = [name for name in metrics if name in EPOCH_METRICS]
    custom = [name for name in metrics if name not in EPOCH_METRICS]
    found = _builtin_columns(session, run_ids, since, builtins, until, stride)
    if custom:
        _add_custom_columns(session, found, since, custom, until, stride)
    return {run_id: (epochs, {name: columns[name] for name in metrics}) for run_id, (epochs, columns) in found.items()}


def _add_custom_columns(
    session: Session, found: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]], since: int, names: Sequence[str],
    until: int | None, stride: int,
) -> None:
    """Put the custom metrics ``names`` into each run's columns of ``found``, aligned on its epochs (NaN where an
    epoch has no value)."""
    table = Metric.__table__
    where = [table.c.run_id.in_(list(found)), table.c.key.in_(list(names)), table.c.epoch > since,
             table.c.epoch <= (_LAST if until is None else until)]
    if stride > 1:
        where.append(table.c.epoch % stride == 0)
    rows = session.execute(select(table.c.run_id, table.c.key, table.c.epoch, table.c.value).where(*where)).all()
    values: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for run_id, key, epoch, value in rows:
        values.setdefault((run_id, key), []).append((epoch, np.nan if value is None else value))
    for run_id, (epochs, shared) in list(found.items()):
        columns = dict(shared)  # runs without epochs share one dict of columns: never filled in place
        found[run_id] = epochs, columns
        for name in names:
            column = np.full(len(epochs), np.nan)
            pairs = values.get((run_id, name))
            if pairs and len(epochs):
                at, numbers = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.float64)
                index = np.minimum(np.searchsorted(epochs, at), len(epochs) - 1)
                hit = epochs[index] == at
                column[index[hit]] = numbers[hit]
            columns[name] = column


def _builtin_columns(
    session: Session, run_ids: Sequence[str], since: int, metrics: Sequence[str], until: int | None = None,
    stride: int = 1,
) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Per run: the epoch numbers (int64) and the built-in numeric fields (float64, NaN for null), by epoch.

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
    sql, positions = _metric_query(connection.dialect, tuple(metrics), stride > 1, until is not None)
    empty = np.empty(0, dtype=np.int64), {name: np.empty(0) for name in metrics}
    found: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    bounds = {"since": since, "until": _LAST if until is None else until, "stride": stride}
    cursor = connection.connection.cursor(binary=True) if postgres else connection.connection.cursor()
    with contextlib.closing(cursor):
        if postgres:
            cursor.execute(sql, {"run_ids": list(run_ids), **bounds})
            record = np.dtype([("epoch", ">i4"), *((name, ">f8") for name in metrics)])
            for run_id, packed in cursor.fetchall():
                array = np.frombuffer(packed or b"", dtype=record)
                array = array[np.argsort(array["epoch"], kind="stable")]
                values = {name: array[name].astype(np.float64) for name in metrics}
                found[run_id] = array["epoch"].astype(np.int64), values
        else:
            for run_id in run_ids:
                params = {"run_id": run_id, **bounds}
                cursor.execute(sql, [params[name] for name in positions])
                columns = list(zip(*cursor.fetchall()))
                if columns:
                    epochs = np.array(columns[0], dtype=np.int64)
                    values = {name: np.array(col, dtype=np.float64) for name, col in zip(metrics, columns[1:])}
                    found[run_id] = epochs, values
    return {run_id: found.get(run_id, empty) for run_id in run_ids}


@functools.lru_cache(maxsize=128)
def _metric_query(
    dialect: Dialect, metrics: tuple[str, ...], strided: bool = False, bounded: bool = False
) -> tuple[str, tuple[str, ...] | None]:
    """The SQL of :func:`_metric_columns` for one dialect and field list, compiled once.

    Returns the SQL and, for a positional paramstyle (SQLite's), the names of
    its parameters in order.  PostgreSQL's takes ``run_ids`` (a list) and
    ``since``; SQLite's one ``run_id`` and ``since``; when ``bounded``, both
    also take ``until`` (only epochs up to it), and when ``strided``
    ``stride`` (only epochs numbered a multiple of it).  A bound is left out
    of the SQL unless asked for: even an always-true one changes PostgreSQL's
    estimates, and cost a read of 50 runs a sixth more.
    """
    table = Epoch.__table__
    since = table.c.epoch > bindparam("since", type_=Integer)
    if bounded:
        since = and_(since, table.c.epoch <= bindparam("until", type_=Integer))
    if strided:
        since = since & ((table.c.epoch % bindparam("stride", type_=Integer)) == literal_column("0"))
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
    session: Session, run_id: str, since: int, until: int | None, names: Sequence[str], only: list[int] | None,
    order: list[int],
) -> dict[str, list[list[float | None]]]:
    """The list fields of the epochs in ``order`` (restricted in SQL to ``only`` when given).

    The database aggregates the rows into one JSON array ``[[epoch, list, ...], ...]``:
    one value to parse instead of one per row and field.
    """
    table = Epoch.__table__
    connection = session.connection()
    where = [table.c.run_id == run_id, table.c.epoch > since, table.c.epoch <= (_LAST if until is None else until)]
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
