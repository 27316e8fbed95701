"""The Celery task ``worker.tasks.train_run``: a thin shell around :func:`trainyard.worker.training.train_run`.

The task gets a run id, never an object, and leaves every decision to the
plain function.  What that function needs from the process -- an engine on
the run database, a worker name unique to the process -- is made on first use
in each process (:class:`Runtime`), so nothing is shared across the pool's fork.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable

from celery import Celery

from trainyard.service.config import Settings
from trainyard.service.queue import TRAIN_TASK
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.worker import training


def worker_name() -> str:
    """A name unique to this process: ``host:pid:random`` (each claim holds its run under it and a part of its own)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Runtime:
    """A worker process's resources for training runs, made in the process that uses them.

    Parameters
    ----------
    settings : Settings
        The database URL and the timings.
    requeue : callable
        ``requeue(run_id)`` sends a released run to the queue again.

    Attributes
    ----------
    should_release : callable
        Polled by training at every epoch; :func:`trainyard.worker.run` points it at the
        worker's shutdown flag.
    """

    def __init__(self, settings: Settings, requeue: Callable[[str], None]):
        self.settings = settings
        self.requeue = requeue
        self.should_release: Callable[[], bool] = lambda: False
        self._pid: int | None = None
        self._context: training.Context | None = None

    def context(self) -> training.Context:
        """The training context of this process (made on its first call in each process)."""
        if self._pid != os.getpid() or self._context is None:
            settings = self.settings
            engine = make_engine(settings.database_url)
            self._context = training.Context(
                Session=make_sessionmaker(engine),
                worker=worker_name(),
                lease_seconds=settings.lease_seconds,
                flush_seconds=settings.flush_seconds,
                weights_budget_bytes=settings.weights_budget_bytes,
                should_release=lambda: self.should_release(),
                requeue=self.requeue,
            )
            self._pid = os.getpid()
        return self._context


def register(app: Celery, settings: Settings) -> Runtime:
    """Register ``worker.tasks.train_run`` on ``app``; returns the :class:`Runtime` its calls use.

    The task is not ``shared``: Celery would otherwise add it to every app of
    the process, and a second app (``celery_config.declare_queue`` makes one) would take the
    task over with its own runtime.
    """
    runtime = Runtime(settings, requeue=lambda run_id: app.send_task(TRAIN_TASK, args=[run_id]))

    @app.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True, shared=False)
    def train_run(run_id: str) -> str:
        """Train the run ``run_id``; returns what became of it (see :func:`trainyard.worker.training.train_run`)."""
        return training.train_run(run_id, ctx=runtime.context())

    app.runtime = runtime
    return runtime
