"""The reconciler: a thread in each worker's main process that recovers runs nobody is training.

Every ``interval`` seconds (the lease length) it calls
:func:`trainyard.service.storage.repo.reconcile` in one transaction and sends the runs
it returns to the queue: runs whose worker died (lease expired) and queued
runs whose message may have been lost; it fails the tracked runs whose client
fell silent (never sent to the queue).  It works the same on every
transport, since it only reads the database and sends messages; several
workers reconciling at once send at most a harmless duplicate.

On kombu's SQLAlchemy transport (the local mode's broker) each pass also
deletes the consumed messages, which that transport marks invisible but
never deletes (:func:`broker_housekeeping`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from trainyard.service.storage import repo

logger = logging.getLogger(__name__)

#: A queued run untouched for this many leases is sent again (its message may have been lost).
QUEUED_RESEND_LEASES = 10


class Reconciler(threading.Thread):
    """Recover stale runs every ``interval`` seconds until :meth:`stop`.

    Parameters
    ----------
    Session : sessionmaker
        Sessions on the run database.
    send : callable
        ``send(run_id)`` puts a run on the queue.
    interval : float
        Seconds between passes (the first pass runs at once).
    queued_for : float
        Seconds a queued run waits untouched before it is sent again.
    tracked_for : float, optional
        Seconds a tracked run's client may stay silent before its run is failed (None: never).
    housekeeping : callable, optional
        Called after each pass (see :func:`broker_housekeeping`).
    """

    def __init__(self, Session: sessionmaker[Session], send: Callable[[str], None], *, interval: float,
                 queued_for: float, tracked_for: float | None = None,
                 housekeeping: Callable[[], object] | None = None):
        super().__init__(name="trainyard-reconciler", daemon=True)
        self.Session, self.send = Session, send
        self.interval, self.queued_for, self.tracked_for = interval, queued_for, tracked_for
        self.housekeeping = housekeeping
        self._stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.reconcile_once()
                if self.housekeeping is not None:
                    self.housekeeping()
            except Exception:  # a database or broker outage: try again next pass
                logger.exception("reconciler pass failed")
            if self._stopped.wait(self.interval):
                return

    def reconcile_once(self) -> repo.Reconciled:
        """One pass: fix the database, then send the runs to resume; returns what was done."""
        with self.Session() as s, s.begin():
            done = repo.reconcile(session=s, queued_for=self.queued_for, tracked_for=self.tracked_for)
        for run_id in done.requeue:
            self.send(run_id)
        if done.requeue or done.cancelled or done.lost:
            logger.info("reconciler: re-sent %s, cancelled %s, failed for lost contact %s", done.requeue,
                        done.cancelled, done.lost)
        return done

    def stop(self) -> None:
        """Ask the thread to end after its current pass."""
        self._stopped.set()


#: The table of kombu's SQLAlchemy transport that holds the messages (its default name).
KOMBU_MESSAGE_TABLE = "kombu_message"


class BrokerHousekeeping:
    """Deletes the consumed messages of kombu's SQLAlchemy transport, which it marks invisible but keeps.

    A consumed message is never needed again: an unacknowledged one lives in
    the consumer's memory and is put back as a new row if it is rejected.
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    def __call__(self) -> int:
        """Delete the consumed messages; how many there were."""
        with self.engine.begin() as connection:
            return connection.execute(text(f"DELETE FROM {KOMBU_MESSAGE_TABLE} WHERE visible = false")).rowcount

    def close(self) -> None:
        self.engine.dispose()


def broker_housekeeping(broker_url: str) -> BrokerHousekeeping | None:
    """The housekeeping a broker needs from the reconciler: for ``sqla+`` URLs, see :class:`BrokerHousekeeping`."""
    if not broker_url.startswith("sqla+"):
        return None
    return BrokerHousekeeping(create_engine(broker_url.removeprefix("sqla+")))
