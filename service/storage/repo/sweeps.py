"""Sweeps and the runs of each (their points are expanded by :mod:`trainyard.service.sweeps`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from trainyard.service.storage.models import SWEEP_METHODS, Run, Sweep, new_id, utcnow
from trainyard.service.storage.repo._common import _choice, _name


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
