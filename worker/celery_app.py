"""The worker's Celery app, made from :class:`~trainyard.service.config.Settings` by :func:`make_celery`.

Nothing is built at import time.  The configuration follows DESIGN.md:

- ``acks_late`` and ``reject_on_worker_lost`` with a prefetch of 1, so a
  message is acknowledged only once its task has returned and a worker killed
  mid-task gives its message back (where the transport can: Redis after its
  visibility timeout; the serverless transports lose it, and the reconciler
  re-sends the run once its lease has expired);
- JSON only, results ignored (the database is the source of truth);
- on Redis one visibility timeout, set in the broker's and the result
  backend's transport options and as ``visibility_timeout``.  A task running
  longer is delivered again while it still runs; that copy finds nothing to
  claim.  Recovery from a dead worker does not wait for it: the lease does;
- the SQLAlchemy transport passes its transport options to
  ``create_engine``, so it gets none; its workers poll the queue every
  0.05 s while busy rather than kombu's second, which made ``trainyard up``
  start one run a second however short the runs (:class:`SQLAlchemyTransport`).

Shutdown: SIGTERM (and a first Ctrl-C) is Celery's warm shutdown.
:func:`trainyard.worker.run` turns it into a flag that the training loop reads at every
epoch: the run is flushed with its checkpoint, released to the queue and sent
again, so another worker resumes it at once.  A cold shutdown (SIGQUIT, a
second Ctrl-C) cancels the task at once, like a crash: the run resumes after
its lease expires.
"""

from __future__ import annotations

import math
import time
from typing import Any

from celery import Celery
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy.exc import IntegrityError

from trainyard.service.config import Settings
from trainyard.service.queue import TRAIN_TASK
from trainyard.worker import tasks

#: Redis visibility timeout (seconds): how long an unacknowledged message waits before redelivery.
#: The database lease, not this, decides who trains a run; this only bounds how long a message of a
#: dead worker lingers (the reconciler has re-sent its run long before).
VISIBILITY_TIMEOUT = 3600

_REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel")

#: Seconds between a local-mode worker's looks at an empty queue while it is busy (see SQLAlchemyTransport).
BUSY_POLL_SECONDS = 0.05
#: ... and once it has had nothing to do for IDLE_AFTER_SECONDS (kombu's own interval).
IDLE_POLL_SECONDS = 1.0
IDLE_AFTER_SECONDS = 5.0


class SQLAlchemyTransport(kombu_sqlalchemy.Transport):
    """kombu's SQLAlchemy transport (local mode's broker), polling twenty times faster while there is work.

    kombu polls an empty queue every second.  With a prefetch of one, a
    worker that finishes a run has found the queue "empty" meanwhile (it could
    take nothing while busy) and sleeps out that second before it takes the
    next run, so ``trainyard up`` trained one run a second however short the
    runs.  This transport looks every ``BUSY_POLL_SECONDS`` while a message is
    unacknowledged or one came within ``IDLE_AFTER_SECONDS``, and every
    ``IDLE_POLL_SECONDS`` otherwise (a look is one query on the broker's
    SQLite file: every 0.1 s it costs about 3 % of a core, every second 0.6 %).
    kombu would read a fixed interval from the transport options, but this
    transport passes those to ``create_engine``, which refuses it.
    """

    idle_after_seconds = IDLE_AFTER_SECONDS
    _last_delivery = -math.inf

    @property
    def polling_interval(self) -> float:  # kombu reads it at each drain_events
        recent = time.monotonic() - self._last_delivery < self.idle_after_seconds
        if recent or any(not channel.qos.can_consume() for channel in self.channels):
            return BUSY_POLL_SECONDS
        return IDLE_POLL_SECONDS

    def _deliver(self, message, queue):
        self._last_delivery = time.monotonic()
        super()._deliver(message, queue)


def _broker(url: str) -> tuple[str, type | None]:
    """The broker URL and transport class to give Celery: ours for ``sqla+`` URLs, which name kombu's."""
    if url.startswith("sqla+"):
        return url.removeprefix("sqla+"), SQLAlchemyTransport
    return url, None


def transport_options(broker_url: str) -> dict[str, Any]:
    """``broker_transport_options`` for ``broker_url``: the visibility timeout on Redis, nothing elsewhere."""
    scheme = broker_url.partition("://")[0]
    if scheme in _REDIS_SCHEMES:
        return {"visibility_timeout": VISIBILITY_TIMEOUT}
    return {}


class WorkerApp(Celery):
    """A Celery app that knows the settings it was made from and the runtime of its task."""

    settings: Settings
    runtime: tasks.Runtime


def make_celery(settings: Settings) -> WorkerApp:
    """The worker's Celery app for ``settings``, with the task ``worker.tasks.train_run`` registered.

    Parameters
    ----------
    settings : Settings
        Broker URL and queue name (``settings.queue``), and what the task needs
        (database URL, lease, flush interval, weights budget).

    Returns
    -------
    WorkerApp
        A :class:`celery.Celery`; ``app.send_task(TRAIN_TASK, args=[run_id])``
        sends a run, ``app.Worker(...)`` runs a worker (see :func:`trainyard.worker.run`).
    """
    broker_url, transport = _broker(settings.broker_url)
    app = WorkerApp("trainyard", broker=broker_url, set_as_current=False)
    options = transport_options(settings.broker_url)
    app.conf.update(
        broker_transport=transport,
        task_default_queue=settings.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=options,
        result_backend_transport_options=options,
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
    )
    if "visibility_timeout" in options:
        app.conf.visibility_timeout = options["visibility_timeout"]
    app.settings = settings
    tasks.register(app, settings)
    return app


def declare_queue(settings: Settings, attempts: int = 3) -> None:
    """Make sure the broker has the queue of ``settings``; call it before the API and the workers start.

    kombu's SQLAlchemy transport creates a queue's row on first use with a
    SELECT then an INSERT, and two processes doing so at once (the API
    sending the first run while a worker starts) make one fail with an
    ``IntegrityError``.  Declared up front, the row exists before anyone
    races for it; a race lost here is retried (the row is then there).
    Other brokers create queues safely on first use: nothing is done for them.
    """
    if not settings.broker_url.startswith("sqla+"):
        return
    app = make_celery(settings)
    queue = app.amqp.queues[settings.queue]
    try:
        for attempt in range(attempts):
            try:
                with app.connection_for_write() as connection:
                    queue(connection.default_channel).declare()
                return
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
    finally:
        app.close()


__all__ = [
    "TRAIN_TASK",
    "VISIBILITY_TIMEOUT",
    "SQLAlchemyTransport",
    "WorkerApp",
    "declare_queue",
    "make_celery",
    "transport_options",
]
