"""Runs as a client sees them: create, read, rename and retag, delete, ask to cancel.

A run's life under a worker (claim, renew, finish, release) is in :mod:`.leases`; pages of runs are in
:mod:`.listing`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from trainyard.service.storage.models import DEFAULT_PROJECT, Run, new_id, utcnow
from trainyard.service.storage.repo._common import _name, _now


def _reload(session: Session, run_id: str) -> Run | None:
    """The run as the database now has it (after a bulk UPDATE that bypassed the identity map)."""
    return session.get(Run, run_id, populate_existing=True)


def _tags(tags: Iterable[str]) -> list[str]:
    """The tags as a list of strings, duplicates dropped, order kept."""
    if isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError("tags must be a list of strings")
    return list(dict.fromkeys(tags))


def create_run(
    *,
    session: Session,
    spec: dict[str, Any],
    name: str,
    seed: int,
    tags: list[str],
    notes: str,
    epochs_total: int,
    project: str = DEFAULT_PROJECT,
    sweep_id: str | None = None,
    sweep_index: int | None = None,
    idempotency_key: str | None = None,
    token_id: str | None = None,
) -> Run:
    """Add a queued run and flush it (so a bad ``sweep_id`` fails here); returns the new :class:`Run`.

    A second run with the same ``idempotency_key`` fails the flush with an ``IntegrityError``.
    """
    now = utcnow()
    run = Run(
        id=new_id(),
        name=_name(name),
        project=_name(project, "project"),
        status="queued",
        spec=spec,
        seed=seed,
        sweep_id=sweep_id,
        sweep_index=sweep_index,
        tags=_tags(tags),
        notes=notes,
        created_at=now,
        updated_at=now,
        attempts=0,
        cancel_requested=False,
        epochs_done=0,
        epochs_total=epochs_total,
        idempotency_key=idempotency_key,
        token_id=token_id,
    )
    session.add(run)
    session.flush()
    return run


def get_run(*, session: Session, run_id: str) -> Run | None:
    """The run with this id, or None."""
    return session.get(Run, run_id)


def count_queued(*, session: Session, token_id: str | None) -> int:
    """How many runs the token ``token_id`` created are queued (with None: those created without a token)."""
    who = Run.token_id.is_(None) if token_id is None else Run.token_id == token_id
    return session.scalar(select(func.count()).select_from(Run).where(who, Run.status == "queued")) or 0


def get_run_by_idempotency_key(*, session: Session, key: str) -> Run | None:
    """The run created with this idempotency key, or None."""
    return session.scalars(select(Run).where(Run.idempotency_key == key)).first()


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
        .values(status="cancelled", cancel_requested=True, finished_at=now, updated_at=now,
                stop_reason=case((Run.epochs_done == 0, "cancelled before it started"), else_="cancelled while queued"))
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
