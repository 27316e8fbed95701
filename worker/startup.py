"""Starting a worker: the ``trainyard worker`` command, its Celery worker in the foreground, and its BLAS threads.

:data:`command` is the click command that ``trainyard worker`` and
``python -m trainyard.worker`` both run; :func:`run` starts the worker for
given settings.  A worker is a main process (Celery's consumer and the :mod:`reconciler
<trainyard.worker.reconciler>` thread) and ``concurrency`` pool processes that train.
Each pool process gets ``cores // concurrency`` BLAS threads (at least one):
numpy's OpenBLAS would otherwise start one thread per core in every process
and oversubscribe the CPU.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
from pathlib import Path
from typing import Any

import click
from celery import signals
from threadpoolctl import threadpool_limits

from trainyard.service.celery_config import declare_queue, supports_events
from trainyard.service.config import ConfigError, Settings
from trainyard.service.queue import TRAIN_TASK
from trainyard.service.storage import migrate
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.worker.celery_app import make_celery
from trainyard.worker.reconciler import QUEUED_RESEND_LEASES, Reconciler, broker_housekeeping

#: Where a cgroup v2 CPU quota is (a container's ``cpus:`` limit): ``"<quota> <period>"`` or ``"max <period>"``.
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def quota_cores(cpu_max: str) -> int | None:
    """The cores a cgroup v2 ``cpu.max`` line allows (rounded up), or None for no quota."""
    quota, period = cpu_max.split()
    return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by its container's CPU quota if any.

    Affinity alone counts every core of the host inside a container limited
    with ``cpus:``, and BLAS threads beyond the quota slow training badly.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota = quota_cores(CPU_MAX.read_text())
    except (OSError, ValueError):  # no cgroup v2 here, or a line we do not understand: no cap
        quota = None
    return cores if quota is None else min(cores, quota)


def blas_threads(concurrency: int) -> int:
    """BLAS threads per pool process: the cores this process may use, shared by ``concurrency`` processes."""
    return max(1, usable_cores() // max(1, concurrency))


def run(settings: Settings, *, concurrency: int = 1, loglevel: str = "info") -> None:
    """Run a Celery worker for ``settings`` in the foreground until SIGINT or SIGTERM.

    Parameters
    ----------
    settings : Settings
        Broker, queue, database and timings.
    concurrency : int
        Pool processes, each training one run at a time.
    loglevel : str
        Celery's log level.

    SIGTERM or a first Ctrl-C stops the worker within about one epoch: each
    run in training is flushed, given back to the queue and sent again, for
    another worker to resume from its checkpoint.  A second Ctrl-C (or
    SIGQUIT) stops at once; those runs resume once their lease expires.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    declare_queue(settings)  # before consuming: the local broker cannot create a queue in two processes at once
    app = make_celery(settings)
    shutting_down = multiprocessing.Event()  # made before the pool forks, so every pool process shares it
    app.runtime.should_release = shutting_down.is_set
    engine = make_engine(settings.database_url)
    housekeeping = broker_housekeeping(settings.broker_url)
    reconciler = Reconciler(
        make_sessionmaker(engine),
        send=lambda run_id: app.send_task(TRAIN_TASK, args=[run_id]),
        interval=settings.lease_seconds,
        queued_for=QUEUED_RESEND_LEASES * settings.lease_seconds,
        tracked_for=settings.track_timeout_seconds,
        housekeeping=housekeeping,
    )
    threads = blas_threads(concurrency)

    def init_pool_process(**_: Any) -> None:
        threadpool_limits(limits=threads)
        engine.dispose(close=False)  # the reconciler's connections belong to the main process (SQLAlchemy's fork rule)

    def start_reconciler(**_: Any) -> None:
        reconciler.start()

    def release_runs(**_: Any) -> None:
        shutting_down.set()

    handlers = [
        (signals.worker_process_init, init_pool_process),
        (signals.worker_ready, start_reconciler),
        (signals.worker_shutting_down, release_runs),
    ]
    for signal, handler in handlers:
        signal.connect(handler, weak=False)
    try:
        worker = app.Worker(
            hostname=f"trainyard-{os.getpid()}@{socket.gethostname()}",
            concurrency=concurrency,
            pool="prefork",
            loglevel=loglevel,
            queues=[settings.queue],
            # Heartbeats (every 2 s) are how Flower knows a worker is online; they are broadcast, which the
            # local transport cannot do.  Gossip and mingle serve nothing here, and mingle slows the start.
            without_heartbeat=not supports_events(settings.broker_url),
            without_gossip=True,
            without_mingle=True,
        )
        worker.start()
    finally:
        reconciler.stop()
        for signal, handler in handlers:
            signal.disconnect(handler)
        engine.dispose()
        if housekeeping is not None:
            housekeeping.close()
        app.close()


@click.command("worker", help="Run one Celery worker that trains queued runs, until Ctrl-C or SIGTERM.")
@click.option("--concurrency", type=click.IntRange(1),
              help="Runs trained at the same time (default: TRAINYARD_WORKER_CONCURRENCY, else 1).")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(("debug", "info", "warning", "error"), case_sensitive=False))
def command(concurrency: int | None, loglevel: str) -> None:
    """Read the settings, refuse a database whose schema is behind (naming the fix), and run the worker."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    engine = make_engine(settings.database_url)
    try:
        migrate.check_schema(engine)
    except migrate.SchemaError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
    run(settings, concurrency=concurrency or settings.worker_concurrency, loglevel=loglevel.lower())
