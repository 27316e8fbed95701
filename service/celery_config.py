"""The one Celery configuration of Trainyard: :func:`celery_app` builds it for the API's sender and for the worker.

The API sends runs with it (:class:`trainyard.service.queue.CeleryQueue`) and
the worker consumes them with it (:func:`trainyard.worker.celery_app.make_celery`
adds the task), so both sides agree on the transport, the queue and the
options of every broker.  Nothing is built at import time.  The configuration:

- ``acks_late`` and ``reject_on_worker_lost`` with a prefetch of 1, so a
  message is acknowledged only once its task has returned and a worker killed
  mid-task gives its message back (where the transport can: Redis after its
  visibility timeout; the local transport loses it, and the reconciler
  re-sends the run once its lease has expired);
- JSON only, results ignored (the database is the source of truth);
- on Redis one visibility timeout, set in the broker's and the result
  backend's transport options and as ``visibility_timeout``.  A task running
  longer is delivered again while it still runs; that copy finds nothing to
  claim.  Recovery from a dead worker does not wait for it: the lease does.
  Socket timeouts too, so a request never waits long on a broker that is down;
- the local mode's broker, kombu's SQLAlchemy transport (``sqla+`` URLs), is
  :class:`SQLAlchemyTransport`, which polls faster while there is work and
  creates its SQLite file 0600.  It passes its transport options to
  ``create_engine``, so it gets none;
- task events (``task-sent`` from the sender, the task's life from the worker)
  on every broker that can broadcast them, which is every broker but the local
  one (:func:`supports_events`): they are what Celery's monitor, Flower, shows.
  Workers send heartbeats there too (:func:`trainyard.worker.run`).
"""

from __future__ import annotations

import math
import time
from typing import Any, TypeVar

from celery import Celery
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy.exc import IntegrityError

from trainyard.service.config import Settings
from trainyard.service.storage.files import prepare_sqlite_file

#: The schemes of Redis broker URLs (kombu's names): plain, TLS, a Unix socket, Sentinel.
REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel")

#: The prefix of a broker URL naming kombu's SQLAlchemy transport: the local mode's serverless broker.
LOCAL_BROKER_PREFIX = "sqla+"

#: Redis visibility timeout (seconds): how long an unacknowledged message waits before redelivery.
#: The database lease, not this, decides who trains a run; this only bounds how long a message of a
#: dead worker lingers (the reconciler has re-sent its run long before).
VISIBILITY_TIMEOUT = 3600

#: Seconds to wait for the broker when connecting, sending or reading a reply.
BROKER_TIMEOUT = 2.0

#: Seconds between a local-mode worker's looks at an empty queue while it is busy (see SQLAlchemyTransport).
BUSY_POLL_SECONDS = 0.05
#: ... and once it has had nothing to do for IDLE_AFTER_SECONDS (kombu's own interval).
IDLE_POLL_SECONDS = 1.0
IDLE_AFTER_SECONDS = 5.0

AppT = TypeVar("AppT", bound=Celery)


class _PrivateFileChannel(kombu_sqlalchemy.Channel):
    """kombu's channel, creating a missing SQLite broker file readable by its owner alone (0600), as the database is:
    it holds every queued run's message."""

    def _engine_from_config(self) -> Any:  # called once per process and URL, before the first connection
        prepare_sqlite_file(self.connection.client.hostname)
        return super()._engine_from_config()


class SQLAlchemyTransport(kombu_sqlalchemy.Transport):
    """kombu's SQLAlchemy transport (local mode's broker), polling twenty times faster while there is work.

    kombu polls an empty queue every second.  With a prefetch of one, a
    worker that finishes a run has found the queue "empty" meanwhile (it could
    take nothing while busy) and sleeps out that second before it takes the
    next run, so ``trainyard up`` trained one run a second however short the
    runs.  This transport looks every ``BUSY_POLL_SECONDS`` while a message is
    unacknowledged or one came within ``IDLE_AFTER_SECONDS``, and every
    ``IDLE_POLL_SECONDS`` otherwise: a look is a query on the broker's SQLite
    file, cheap but not free, so an idle worker looks seldom (docs/decisions.md
    has the costs measured).
    kombu would read a fixed interval from the transport options, but this
    transport passes those to ``create_engine``, which refuses it.
    """

    Channel = _PrivateFileChannel
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


def is_redis(broker_url: str) -> bool:
    """Whether ``broker_url`` names a Redis broker (one of :data:`REDIS_SCHEMES`)."""
    return broker_url.partition("://")[0] in REDIS_SCHEMES


def supports_events(broker_url: str) -> bool:
    """Whether the broker can carry Celery's events and heartbeats: every broker but the local one.

    Events are broadcast (a fanout exchange), which kombu's SQLAlchemy
    transport cannot do: there they would only leave rows in its tables.
    """
    return not broker_url.startswith(LOCAL_BROKER_PREFIX)


def transport_options(broker_url: str) -> dict[str, Any]:
    """``broker_transport_options`` for ``broker_url``: on Redis the visibility and socket timeouts, else nothing.

    Other transports take other options (kombu's SQLAlchemy transport passes
    its options to ``create_engine``, which refuses socket settings), so they
    get none.
    """
    if is_redis(broker_url):
        return {
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "socket_timeout": BROKER_TIMEOUT,
            "socket_connect_timeout": BROKER_TIMEOUT,
        }
    return {}


def _broker(url: str) -> tuple[str, type | None]:
    """The broker URL and transport class to give Celery: ours for ``sqla+`` URLs, which name kombu's."""
    if url.startswith(LOCAL_BROKER_PREFIX):
        return url.removeprefix(LOCAL_BROKER_PREFIX), SQLAlchemyTransport
    return url, None


def celery_app(broker_url: str, queue: str | None = None, *, app_class: type[AppT] = Celery) -> AppT:
    """A Celery app configured for ``broker_url`` and ``queue``, with no task: what the API and the worker share.

    Parameters
    ----------
    broker_url : str
        The broker (``settings.broker_url``): ``redis://...``, ``sqla+sqlite:///...``, ...
    queue : str, optional
        The queue runs are sent to and read from (``settings.queue``); None keeps Celery's default.
    app_class : type, optional
        The class of the app (a subclass of :class:`celery.Celery`).

    Returns
    -------
    Celery
        Not the current app; ``app.close()`` releases its connections.
    """
    url, transport = _broker(broker_url)
    options = transport_options(broker_url)
    events = supports_events(broker_url)
    app = app_class("trainyard", broker=url, set_as_current=False)
    app.conf.update(
        broker_transport=transport,
        broker_transport_options=options,
        result_backend_transport_options=options,
        broker_connection_timeout=BROKER_TIMEOUT,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_send_sent_event=events,  # a queued run shows in Flower, with the time it was sent
        worker_send_task_events=events,
    )
    if "visibility_timeout" in options:
        app.conf.visibility_timeout = options["visibility_timeout"]
    if queue is not None:
        app.conf.task_default_queue = queue
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
    if not settings.broker_url.startswith(LOCAL_BROKER_PREFIX):
        return
    app = celery_app(settings.broker_url, settings.queue)
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
