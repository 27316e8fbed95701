"""Sweeps and the runs of each (their points are expanded by :mod:`trainyard.service.sweeps`)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, literal, or_, select, tuple_
from sqlalchemy.orm import Session

from trainyard.service.storage.models import (
    DEFAULT_PROJECT,
    FINISHED_STATUSES,
    RANKED_STATUSES,
    RUN_STATUSES,
    SUMMARY_FIELDS,
    SWEEP_METHODS,
    Run,
    Sweep,
    is_id,
    new_id,
    utcnow,
)
from trainyard.service.storage.repo._common import _choice, _name, _utc


def create_sweep(
    *,
    session: Session,
    name: str,
    method: str,
    base_spec: dict[str, Any],
    space: dict[str, Any],
    project: str = DEFAULT_PROJECT,
    idempotency_key: str | None = None,
) -> Sweep:
    """Store a sweep (its runs are created with ``create_run(..., sweep_id=sweep.id, project=sweep.project)``).

    A second sweep with the same ``idempotency_key`` fails the flush with an ``IntegrityError``.
    """
    sweep = Sweep(
        id=new_id(),
        name=_name(name),
        project=_name(project, "project"),
        method=_choice(method, SWEEP_METHODS, "method"),
        base_spec=base_spec,
        space=space,
        created_at=utcnow(),
        idempotency_key=idempotency_key,
    )
    session.add(sweep)
    session.flush()
    return sweep


def get_sweep(*, session: Session, sweep_id: str) -> Sweep | None:
    """The sweep, or None."""
    return session.get(Sweep, sweep_id)


def get_sweep_by_idempotency_key(*, session: Session, key: str) -> Sweep | None:
    """The sweep created with this idempotency key, or None."""
    return session.scalars(select(Sweep).where(Sweep.idempotency_key == key)).first()


def find_sweeps(*, session: Session, id_or_name: str, limit: int = 10) -> list[Sweep]:
    """The sweep with this id, or up to ``limit`` sweeps with this name (newest first)."""
    query = (select(Sweep).where(or_(Sweep.id == id_or_name, Sweep.name == id_or_name))
             .order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit))
    return list(session.scalars(query))


def list_sweeps(
    *, session: Session, project: str | None = None, limit: int = 100, cursor: str | None = None
) -> tuple[list[Sweep], str | None]:
    """A page of sweeps, newest first, and the cursor of the next page (None on the last).

    With ``project``, only the sweeps of that project (by its exact name).

    Raises
    ------
    ValueError
        For a cursor that is not the ``next`` of an earlier page.
    """
    query = select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit + 1)
    if project is not None:
        query = query.where(Sweep.project == project)
    if cursor is not None:
        created_at, last_id = _decode(cursor)
        query = query.where(tuple_(Sweep.created_at, Sweep.id) < tuple_(_utc(created_at), literal(last_id)))
    sweeps = list(session.scalars(query))
    if len(sweeps) <= limit:
        return sweeps, None
    last = sweeps[limit - 1]
    return sweeps[:limit], _encode(last.created_at, last.id)


def _encode(created_at: dt.datetime, sweep_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), sweep_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[dt.datetime, str]:
    try:
        created_at, sweep_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = dt.datetime.fromisoformat(created_at)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, OverflowError):
        raise _INVALID_CURSOR from None
    if moment.tzinfo is None or not is_id(sweep_id):
        raise _INVALID_CURSOR
    return moment, sweep_id


_INVALID_CURSOR = ValueError("invalid cursor: pass the 'next' value of the previous page unchanged")


def sweep_progress(*, session: Session, sweep_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each sweep's runs counted by status, and its epochs done and to do, in one aggregate query (no run is read).

    Returns ``{sweep_id: {"runs", "counts": {status: n}, "finished", "epochs_done", "epochs_total"}}``.
    """
    progress = {sweep_id: {"runs": 0, "counts": dict.fromkeys(RUN_STATUSES, 0), "finished": 0, "epochs_done": 0,
                           "epochs_total": 0} for sweep_id in sweep_ids}
    if not progress:
        return progress
    query = (
        select(Run.sweep_id, Run.status, func.count(), func.sum(Run.epochs_done), func.sum(Run.epochs_total))
        .where(Run.sweep_id.in_(list(progress)))
        .group_by(Run.sweep_id, Run.status)
    )
    for sweep_id, status, count, done, total in session.execute(query):
        shown = progress[sweep_id]
        shown["runs"] += count
        shown["counts"][status] = count
        shown["finished"] += count if status in FINISHED_STATUSES else 0
        shown["epochs_done"] += int(done or 0)
        shown["epochs_total"] += int(total or 0)
    return progress


def sweep_best(
    *, session: Session, sweep_ids: Sequence[str], field: str, higher_is_better: bool
) -> dict[str, tuple[str, float]]:
    """The run of each sweep with the best value of the summary column ``field`` among its runs that finished
    training (:data:`RANKED_STATUSES`; ties: the first in the sweep), as ``{sweep_id: (run_id, value)}``; sweeps
    with no such run yet are left out.  One query, no run read."""
    if not sweep_ids:
        return {}
    column = getattr(Run, _choice(field, SUMMARY_FIELDS, "field"))
    order = column.desc() if higher_is_better else column.asc()
    ranked = (
        select(Run.sweep_id, Run.id, column.label("value"),
               func.row_number().over(partition_by=Run.sweep_id, order_by=(order, *_SWEEP_ORDER)).label("rank"))
        .where(Run.sweep_id.in_(list(sweep_ids)), Run.status.in_(RANKED_STATUSES), column.is_not(None))
        .subquery()
    )
    rows = session.execute(select(ranked.c.sweep_id, ranked.c.id, ranked.c.value).where(ranked.c.rank == 1))
    return {sweep_id: (run_id, float(value)) for sweep_id, run_id, value in rows}


#: A sweep's order: its points' (runs of sweeps made before the index was stored have none; they come by creation).
_SWEEP_ORDER = (Run.sweep_index, Run.created_at, Run.id)


def sweep_runs(*, session: Session, sweep_ids: Sequence[str]) -> dict[str, list[Run]]:
    """The runs of each sweep (one query), in the order of its points."""
    by_sweep: dict[str, list[Run]] = {sweep_id: [] for sweep_id in sweep_ids}
    if by_sweep:
        query = select(Run).where(Run.sweep_id.in_(list(by_sweep))).order_by(*_SWEEP_ORDER)
        for run in session.scalars(query):
            by_sweep[run.sweep_id].append(run)
    return by_sweep
