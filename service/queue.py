"""Sending runs to the workers: a queue message carries only a run id.

The API sends after the transaction that created the run has committed.
:class:`CeleryQueue` sends the task ``worker.tasks.train_run`` by name, so the
API never imports the worker; its Celery app is configured as the worker's
(:func:`trainyard.service.celery_config.celery_app`).
"""

from __future__ import annotations

from typing import Protocol

from kombu.exceptions import OperationalError

from trainyard.service.celery_config import BROKER_TIMEOUT, celery_app

#: The task the worker defines; sent by name.  Messages already in brokers carry it: never rename it.
TRAIN_TASK = "worker.tasks.train_run"

#: Retries of a publish while the broker is unreachable: short, so a request is not held up for long.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


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
        The queue to send to (``settings.queue``; default Celery's, ``celery``).
    """

    def __init__(self, broker_url: str, *, queue_name: str | None = None):
        self.app = celery_app(broker_url, queue_name)

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
