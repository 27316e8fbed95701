"""A run's life under a worker: claim, renew, finish, release, and the reconciler's recovery.

The reconciler takes back the runs a dead worker or a lost message left behind.  Every change of state
is one conditional UPDATE, so workers, the reconciler and a client's cancel may race on a run and still
leave it in one consistent state.

``attempts`` is the attempt a run is on: 0 until a worker first claims it, then one more each time a
worker *lost* it (its lease expired: the worker died, hung or lost the database for longer than the
lease), counted when the run is taken over or put back in the queue by the reconciler.  A worker that
gives the run back (:func:`release_run`, a graceful shutdown) hands the same attempt on, so rolling
restarts never use attempts up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, case, func, or_, update
from sqlalchemy.orm import Session

from trainyard.service.storage.models import FINISHED_STATUSES, SUMMARY_FIELDS, Run
from trainyard.service.storage.repo._common import _choice, _finite, _now, _utc


def _claimable(now: dt.datetime) -> ColumnElement[bool]:
    """Runs a worker may take: queued, or running under an expired lease; never one whose cancel was asked for, nor a
    tracked run (its client trains it)."""
    return and_(
        Run.kind == "trained",
        ~Run.cancel_requested,
        or_(Run.status == "queued", and_(Run.status == "running", Run.lease_expires_at < _utc(now))),
    )


def claim_run(
    *, session: Session, run_id: str, worker: str, lease_seconds: float, now: dt.datetime | None = None
) -> Run | None:
    """Take a run for ``worker`` with one conditional UPDATE; the run if ``worker`` now holds it, else None.

    Matches a queued run, or a running run whose lease expired before ``now``
    (its worker died), and not one whose cancel was requested; and a run
    ``worker`` already holds: a claim repeated because the acknowledgement of
    its COMMIT was lost gets the run as the first call did (``attempts``
    unchanged, the lease renewed), so ``worker`` must name one claim of one
    process, never two trainers.  Sets status ``running``, ``worker``,
    ``attempts`` (see the module's note: 1 on the first claim, one more when
    taking over an expired lease), ``started_at`` (first claim only) and a
    lease until ``now + lease_seconds``.  Concurrent claims of one run cannot
    both succeed: on PostgreSQL the second UPDATE waits for the first's row
    lock and then re-checks the condition, on SQLite writes are serialised.
    """
    if lease_seconds <= 0:
        raise ValueError("lease_seconds must be positive")
    now = _now(now)
    held = and_(Run.status == "running", Run.worker == worker)
    return session.scalars(
        update(Run)
        .where(Run.id == run_id, or_(_claimable(now), held))
        .values(
            status="running",
            worker=worker,
            # Evaluated on the row as it was: its own claim repeated, a lost lease taken over, a first claim.
            attempts=case(
                (held, Run.attempts), (Run.status == "running", Run.attempts + 1), (Run.attempts == 0, 1),
                else_=Run.attempts,
            ),
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
    stop_reason: str | None = None,
    summary: Mapping[str, float | int | None] | None = None,
    worker: str | None = None,
    now: dt.datetime | None = None,
) -> Run | None:
    """End a run: final ``status``, ``error`` message, why it stopped, summary metrics; ``finished_at`` set, lease
    cleared.

    Parameters
    ----------
    status : {"succeeded", "failed", "cancelled"}
    stop_reason : str, optional
        Why training ended, as people read it (``completed: all 30 epochs``,
        ``early stopping at epoch 20: ...``, ``diverged at epoch 9``).
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
        .values(status=status, error=error, stop_reason=stop_reason, finished_at=now, lease_expires_at=None,
                updated_at=now, **values)
        .returning(Run)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).first()


def _summary_values(summary: Mapping[str, float | int | None]) -> dict[str, float | int | None]:
    unknown = sorted(set(summary) - set(SUMMARY_FIELDS))
    if unknown:
        raise ValueError(f"unknown summary field(s) {', '.join(unknown)}: use {', '.join(SUMMARY_FIELDS)}")
    return {key: (value if key == "best_epoch" or value is None else _finite(value)) for key, value in summary.items()}


def release_run(*, session: Session, run_id: str, worker: str, now: dt.datetime | None = None) -> bool:
    """Give a running run held by ``worker`` back to the queue (status ``queued``, no worker, no lease).

    A worker that is shutting down calls it after its last flush, so the next
    worker may claim the run at once instead of waiting for the lease to
    expire; the next claim continues the same attempt (``attempts`` unchanged).
    Returns whether the run was released (False: not held by ``worker``).
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
    """What :func:`reconcile` did: the runs to send to the queue again, the runs it cancelled, and the tracked runs
    it failed for lost contact."""

    requeue: list[str]
    cancelled: list[str]
    lost: list[str] = field(default_factory=list)


#: The error of a tracked run whose client fell silent.
LOST_CONTACT = "lost contact with the client"


def reconcile(
    *, session: Session, queued_for: float, tracked_for: float | None = None, now: dt.datetime | None = None
) -> Reconciled:
    """Recover the runs a dead worker or a lost message left behind; the caller sends ``requeue``.

    - A running run whose lease expired before ``now`` goes back to
      ``queued`` (its worker died or hangs: a worker that renews later finds
      it no longer holds the run) with one more ``attempts`` (the next claim
      starts that attempt), or to ``cancelled`` if its cancel was asked for.
    - A queued run untouched (``updated_at``) for ``queued_for`` seconds may
      have lost its message.  Its ``updated_at`` is set to ``now``, so it is
      sent again at most once per ``queued_for`` however long the queue's
      backlog; a duplicate message is harmless (nothing to claim).

    - A tracked run (a client logs it: it has no lease and is never queued)
      still running with no contact (``updated_at``) for ``tracked_for``
      seconds is failed with :data:`LOST_CONTACT` (not with ``tracked_for``
      None).

    Each change is a conditional UPDATE, so several workers reconciling at
    once send at most a few duplicates.
    """
    now = _now(now)
    lost: list[str] = []
    if tracked_for is not None:
        silent = _utc(now - dt.timedelta(seconds=tracked_for))
        lost = list(session.scalars(
            update(Run)
            .where(Run.kind == "tracked", Run.status == "running", Run.updated_at < silent)
            .values(status="failed", error=LOST_CONTACT, finished_at=now, updated_at=now,
                    stop_reason=f"failed: {LOST_CONTACT} for {tracked_for:g} seconds")
            .returning(Run.id)
            .execution_options(synchronize_session=False)
        ).all())
    expired = and_(Run.kind == "trained", Run.status == "running", Run.lease_expires_at < _utc(now))
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
        .values(status="queued", worker=None, attempts=Run.attempts + 1, lease_expires_at=None, updated_at=now)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).all()
    forgotten = session.scalars(
        update(Run)
        .where(Run.kind == "trained", Run.status == "queued",
               Run.updated_at < _utc(now - dt.timedelta(seconds=queued_for)))
        .values(updated_at=now)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).all()
    return Reconciled(requeue=list(dict.fromkeys([*requeued, *forgotten])), cancelled=list(cancelled), lost=lost)
