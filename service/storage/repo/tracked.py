"""Tracked runs: runs a client logs from its own training loop, epoch by epoch, over the API.

A tracked run is made ``running`` (there is no queue and no worker), takes
epochs with built-in and custom metrics and weights until the client
finishes it (:func:`~trainyard.service.storage.repo.finish_run`), or until
the reconciler fails it for lost contact (``updated_at``: every write here
touches it).  Custom metrics live in the ``metrics`` table, one row per
``(run_id, key, epoch)``, and their names in ``runs.metric_keys``, in the
order first logged.

The caller checks what it writes (names, bounds, the run's kind and status);
these functions store it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from trainyard.service.storage.models import DEFAULT_PROJECT, Epoch, Metric, Run, new_id
from trainyard.service.storage.repo._common import _finite, _insert, _name, _now
from trainyard.service.storage.repo.epochs import EPOCH_LISTS, EPOCH_METRICS
from trainyard.service.storage.repo.runs import _tags

#: A seed a tracked run's ``params`` may give (the ``runs.seed`` column is a BIGINT).
_MAX_SEED = 2**63 - 1


def create_tracked_run(
    *,
    session: Session,
    name: str,
    params: dict[str, Any],
    tags: list[str],
    notes: str,
    project: str = DEFAULT_PROJECT,
    idempotency_key: str | None = None,
    token_id: str | None = None,
    now: dt.datetime | None = None,
) -> Run:
    """Add a tracked run, ``running`` from ``now``, with ``params`` as its spec; flushed, returned.

    ``epochs_total`` is 0 (a tracked run's length is not known in advance);
    ``seed`` is ``params["seed"]`` when that is a non-negative int, else 0.
    A second run with the same ``idempotency_key`` fails the flush with an
    ``IntegrityError``.
    """
    now = _now(now)
    seed = params.get("seed")
    run = Run(
        id=new_id(),
        kind="tracked",
        name=_name(name),
        project=_name(project, "project"),
        status="running",
        spec=params,
        seed=seed if type(seed) is int and 0 <= seed <= _MAX_SEED else 0,
        tags=_tags(tags),
        notes=notes,
        created_at=now,
        started_at=now,
        updated_at=now,
        attempts=0,
        cancel_requested=False,
        epochs_done=0,
        epochs_total=0,
        idempotency_key=idempotency_key,
        token_id=token_id,
    )
    session.add(run)
    session.flush()
    return run


def lock_run(*, session: Session, run_id: str) -> Run | None:
    """The run as the database has it, its row locked until the transaction ends (on PostgreSQL; SQLite
    serialises writers), or None."""
    return session.scalars(
        select(Run).where(Run.id == run_id).with_for_update().execution_options(populate_existing=True)
    ).first()


def write_tracked_epochs(
    *, session: Session, run_id: str, rows: Sequence[Mapping[str, Any]], now: dt.datetime | None = None
) -> int:
    """Store a tracked run's epochs: each row has ``epoch``, and any of :data:`EPOCH_METRICS` and of the run's
    custom metrics; returns the highest epoch stored (the run's new ``epochs_done``).

    Idempotent per epoch, the last write winning field by field: an epoch sent
    again keeps one row, its fields sent again take the new values (null
    included) and those not sent keep theirs; within ``rows`` a later row for
    an epoch wins over an earlier one.  Custom metrics not yet in
    ``runs.metric_keys`` are added to it in the order met (the caller checks
    :data:`MAX_CUSTOM_METRICS`).  The run's ``updated_at``, ``epochs_done``
    and summary (:func:`tracked_summary`) are brought up to date.  Non-finite
    values are stored as null.
    """
    now = _now(now)
    merged: dict[int, dict[str, Any]] = {}
    for row in rows:
        merged.setdefault(int(row["epoch"]), {}).update(row)
    run = lock_run(session=session, run_id=run_id)
    if run is None:
        raise LookupError(f"no run with id {run_id!r}")
    keys = list(run.metric_keys or [])
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    metrics: list[dict[str, Any]] = []
    for epoch, row in merged.items():
        builtins = tuple(name for name in EPOCH_METRICS if name in row)
        by_shape.setdefault(builtins, []).append(
            {"run_id": run_id, "epoch": epoch, "recorded_at": now, **{name: _finite(row[name]) for name in builtins}})
        for key, value in row.items():
            if key == "epoch" or key in EPOCH_METRICS:
                continue
            if key not in keys:
                keys.append(key)
            metrics.append({"run_id": run_id, "key": key, "epoch": epoch, "value": _finite(value)})
    postgres = session.get_bind().dialect.name == "postgresql"
    for builtins, values in by_shape.items():  # one statement per set of fields sent: the others are kept
        if postgres:
            _upsert_unnest(session, "epochs", ("run_id", "epoch"), {"epoch": "integer", "recorded_at": "timestamptz",
                                                                    **dict.fromkeys(builtins, "double precision")},
                           values, fixed={name: "'[]'::jsonb" for name in EPOCH_LISTS})
            continue
        insert = _insert(session, Epoch.__table__)
        changed = {name: insert.excluded[name] for name in ("recorded_at", *builtins)}
        session.execute(insert.on_conflict_do_update(index_elements=["run_id", "epoch"], set_=changed), values)
    if metrics and postgres:
        _upsert_unnest(session, "metrics", ("run_id", "key", "epoch"),
                       {"key": "text", "epoch": "integer", "value": "double precision"}, metrics)
    elif metrics:
        insert = _insert(session, Metric.__table__)
        session.execute(insert.on_conflict_do_update(index_elements=["run_id", "key", "epoch"],
                                                     set_={"value": insert.excluded.value}), metrics)
    highest = max([run.epochs_done, *merged])
    appended = min(merged) > run.epochs_done  # the usual batch: epochs after every stored one
    summary = (_summary_after(session, run, [merged[epoch] for epoch in sorted(merged)]) if appended
               else tracked_summary(session=session, run_id=run_id))
    session.execute(
        update(Run).where(Run.id == run_id)
        .values(updated_at=now, epochs_done=highest, metric_keys=keys or None, **summary)
        .execution_options(synchronize_session=False)
    )
    return highest


def _summary_after(session: Session, run: Run, rows: Sequence[Mapping[str, Any]]) -> dict[str, float | int | None]:
    """:func:`tracked_summary` of ``run`` once ``rows`` (new epochs, after every stored one, in order) are stored,
    from its summary columns and the rows alone: a batch costs its own rows, not the run's (the whole read is for
    a batch that rewrites earlier epochs).  The best epoch's loss is read back by its key: the columns keep the
    best validation loss, not the training loss a best epoch without one is chosen by."""
    best_epoch, best_loss = run.best_epoch, None
    if best_epoch is not None:
        best_loss = session.scalar(select(func.coalesce(Epoch.val_loss, Epoch.train_loss))
                                   .where(Epoch.run_id == run.id, Epoch.epoch == best_epoch))
    best_val_loss, best_val_accuracy = run.best_val_loss, run.best_val_accuracy
    for row in rows:
        val_loss, val_accuracy = _finite(row.get("val_loss")), _finite(row.get("val_accuracy"))
        loss = val_loss if val_loss is not None else _finite(row.get("train_loss"))
        if loss is not None and (best_loss is None or loss < best_loss):  # ties: the earlier epoch stays
            best_epoch, best_loss = int(row["epoch"]), loss
        if val_loss is not None and (best_val_loss is None or val_loss < best_val_loss):
            best_val_loss = val_loss
        if val_accuracy is not None and (best_val_accuracy is None or val_accuracy > best_val_accuracy):
            best_val_accuracy = val_accuracy
    last = rows[-1]
    return {
        **{f"final_{name}": _finite(last.get(name)) for name in ("train_loss", "val_loss", "train_accuracy",
                                                                    "val_accuracy")},
        "best_val_loss": best_val_loss,
        "best_val_accuracy": best_val_accuracy,
        "best_epoch": best_epoch,
    }


def _upsert_unnest(
    session: Session, table: str, key: tuple[str, ...], columns: Mapping[str, str], rows: Sequence[Mapping[str, Any]],
    fixed: Mapping[str, str] | None = None,
) -> None:
    """``INSERT ... SELECT FROM unnest(...) ON CONFLICT (key) DO UPDATE`` of ``rows`` (one ``run_id``) on
    PostgreSQL: one array per column (``columns``: name → SQL type) sent in binary on the DBAPI cursor of the
    session's connection, a constant statement text whatever the batch's size (as the worker's ``write_epochs``).
    The columns outside ``key`` take the new values; those of ``fixed`` (name → SQL value) are set on insert only."""
    names = list(columns)
    fixed = fixed or {}
    arrays = ", ".join(f"%({name})b::{sql_type}[]" for name, sql_type in columns.items())
    changed = ", ".join(f"{name} = excluded.{name}" for name in names if name not in key)
    sql = (f"INSERT INTO {table} (run_id, {', '.join([*names, *fixed])}) "
           f"SELECT %(run_id)s, *{''.join(', ' + value for value in fixed.values())} FROM unnest({arrays}) "
           f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {changed}")
    params: dict[str, Any] = {"run_id": rows[0]["run_id"]}
    params.update({name: [row[name] for row in rows] for name in names})
    with contextlib.closing(session.connection().connection.cursor(binary=True)) as cursor:
        cursor.execute(sql, params)


def tracked_summary(*, session: Session, run_id: str) -> dict[str, float | int | None]:
    """A run's summary columns from its stored epochs, as the worker keeps them: the final metrics are those of
    the highest epoch, ``best_val_loss`` the lowest ``val_loss``, ``best_val_accuracy`` the highest
    ``val_accuracy``, ``best_epoch`` the (earliest) epoch of the lowest loss, ``val_loss`` where an epoch has
    one and ``train_loss`` where not.

    Three reads of all the run's epochs: :func:`write_tracked_epochs` uses it only for a batch that rewrites
    stored epochs, and keeps the summary from the batch alone otherwise (:func:`_summary_after`).
    """
    of_run = Epoch.run_id == run_id
    last = session.execute(
        select(Epoch.train_loss, Epoch.val_loss, Epoch.train_accuracy, Epoch.val_accuracy)
        .where(of_run).order_by(Epoch.epoch.desc()).limit(1)
    ).first()
    best_val_loss, best_val_accuracy = session.execute(
        select(func.min(Epoch.val_loss), func.max(Epoch.val_accuracy)).where(of_run)).one()
    loss = func.coalesce(Epoch.val_loss, Epoch.train_loss)
    best_epoch = session.scalar(
        select(Epoch.epoch).where(of_run, loss.is_not(None)).order_by(loss, Epoch.epoch).limit(1))
    final = dict(zip(("train_loss", "val_loss", "train_accuracy", "val_accuracy"), last or (None,) * 4))
    return {
        **{f"final_{name}": value for name, value in final.items()},
        "best_val_loss": best_val_loss,
        "best_val_accuracy": best_val_accuracy,
        "best_epoch": best_epoch,
    }


def touch_run(*, session: Session, run_id: str, now: dt.datetime | None = None) -> None:
    """Record contact with a tracked run's client (its ``updated_at``), as every write does."""
    session.execute(update(Run).where(Run.id == run_id).values(updated_at=_now(now))
                    .execution_options(synchronize_session=False))
