"""The worker's Celery app, made from :class:`~trainyard.service.config.Settings` by :func:`make_celery`.

Nothing is built at import time.  The app is the one configuration the API
sends with (:func:`trainyard.service.celery_config.celery_app`: acks late,
prefetch 1, JSON, the Redis visibility timeout, the local transport, task
events), plus the task ``worker.tasks.train_run`` and the worker's logging.

Shutdown: SIGTERM (and a first Ctrl-C) is Celery's warm shutdown.
:func:`trainyard.worker.run` turns it into a flag that the training loop reads at every
epoch: the run is flushed with its checkpoint, released to the queue and sent
again, so another worker resumes it at once.  A cold shutdown (SIGQUIT, a
second Ctrl-C) cancels the task at once, like a crash: the run resumes after
its lease expires.
"""

from __future__ import annotations

from celery import Celery

from trainyard.service.celery_config import celery_app
from trainyard.service.config import Settings
from trainyard.worker import tasks


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
    app = celery_app(settings.broker_url, settings.queue, app_class=WorkerApp)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
    )
    app.settings = settings
    tasks.register(app, settings)
    return app


__all__ = ["WorkerApp", "make_celery"]
