"""Sending runs to the workers: a queue message carries only a run id.

The API sends after the transaction that created the run has committed.
:class:`CeleryQueue` sends the task ``worker.tasks.train_run`` by name, so the
API never imports the worker.
"""

from __future__ import annotations

from typing import Protocol

from celery import Celery
from kombu.exceptions import OperationalError

#: The task the worker defines; sent by name.
TRAIN_TASK = "worker.tasks.train_run"

#: Seconds to wait for the broker when sending or pinging.
BROKER_TIMEOUT = 2.0

#: Retries of a publish while the broker is unreachable: short, so a request is not held up for long.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def _transport_options(broker_url: str) -> dict[str, float]:
    """Socket timeouts for Redis, so a request never waits long on a broker that is down.

    Other transports take other options (kombu's SQLAlchemy transport passes
    its options to ``create_engine``, which refuses socket settings), so they
    get none.
    """
    if broker_url.partition("://")[0] in ("redis", "rediss"):
        return {"socket_timeout": BROKER_TIMEOUT, "socket_connect_timeout": BROKER_TIMEOUT}
    return {}


class QueueError(RuntimeError):
    """The broker could not be reached."""


class RunQueue(Protocol):
    """Where the API hands runs to the workers."""

    def send(self, run_id: str) -> None:
        """Ask a worker to train the run ``run_id``; raises :class:`QueueError` when the broker is unreachable."""

    def ping(self) -> None:
        """Check that the broker is reachable; raises :class:`QueueError` when it is not."""


class CeleryQueue:
    """A :class:`RunQueue` on a Celery broker.

    Parameters
    ----------
    broker_url : str
        The Celery broker URL (``redis://...``, ``sqla+sqlite:///...``).
    queue_name : str, optional
        The queue to send to (Celery's ``task_default_queue``; default ``celery``).
    """

    def __init__(self, broker_url: str, *, queue_name: str | None = None):
        self.app = Celery("trainyard-api", broker=broker_url, set_as_current=False)
        self.app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            broker_connection_timeout=BROKER_TIMEOUT,
            broker_transport_options=_transport_options(broker_url),
        )
        if queue_name is not None:
            self.app.conf.task_default_queue = queue_name

    def send(self, run_id: str) -> None:
        try:
            self.app.send_task(TRAIN_TASK, args=[run_id], retry=True, retry_policy=PUBLISH_RETRY_POLICY)
        except (OperationalError, OSError) as exc:
            raise QueueError(f"could not send run {run_id} to the broker: {exc}") from exc

    def ping(self) -> None:
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT)
        except (OperationalError, OSError) as exc:
            raise QueueError(f"broker unreachable: {exc}") from exc

    def close(self) -> None:
        """Release the broker connections."""
        self.app.close()
