"""Helpers of the worker and reliability tests: specs, polling, a stack (database + queue) and worker subprocesses."""
from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from factories import spec_of
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from trainyard.service.celery_config import declare_queue
from trainyard.service.config import Settings
from trainyard.service.queue import CeleryQueue
from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.migrate import upgrade
from trainyard.trainer import fit
from trainyard.worker.training import weights_npz


def epochs_lasting(spec: dict[str, Any], seconds: float, *, at_least: int) -> int:
    """Epochs of ``spec`` that train for about ``seconds`` here (``fit`` alone; a worker is slower), or ``at_least``.

    For tests that must catch a run mid-training whatever the machine's speed: one epoch of DIGITS took
    7 ms on one machine and 1.7 ms on another, where 400 epochs finished between two polls of a test.
    """
    fit(spec_of(spec, epochs=1))  # loads and caches the dataset
    sample = 50
    started = time.perf_counter()
    fit(spec_of(spec, epochs=sample))
    return max(at_least, math.ceil(seconds * sample / (time.perf_counter() - started)))


def npz_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def assert_one_row_per_epoch(stack: Stack, run_id: str, epochs: int) -> None:
    """The run has one epoch row for each of its ``epochs`` epochs, no gap and no double."""
    assert [row["epoch"] for row in stack.epochs(run_id)] == list(range(1, epochs + 1))


def assert_bit_identical_to_fit(stack: Stack, run_id: str, spec: dict[str, Any]) -> None:
    """The run's last weights are those of ``fit(spec)`` in this process, bit for bit."""
    expected = npz_arrays(weights_npz(fit(spec).network.params))
    epoch, data = stack.weights(run_id)
    got = npz_arrays(data)
    assert epoch == spec["epochs"] and got.keys() == expected.keys()
    for name in expected:
        assert np.array_equal(got[name], expected[name]), name


# --------------------------------------------------------------------------- stacks


@dataclass
class Stack:
    """A database and a broker queue, with the means to submit runs and start workers on them."""

    kind: str
    settings: Settings
    Session: sessionmaker[OrmSession]
    folder: Path
    queue: CeleryQueue
    workers: list[WorkerProcess] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        s = self.settings
        env = {key: value for key, value in os.environ.items() if not key.startswith("TRAINYARD_")}
        env.update(
            TRAINYARD_DATA_DIR=str(s.data_dir),
            TRAINYARD_DATABASE_URL=s.database_url,
            TRAINYARD_BROKER_URL=s.broker_url,
            TRAINYARD_QUEUE=s.queue,
            TRAINYARD_LEASE_SECONDS=str(s.lease_seconds),
            TRAINYARD_FLUSH_SECONDS=str(s.flush_seconds),
        )
        env.update(overrides)
        return env

    def start_worker(self, *, concurrency: int = 1, **env: str) -> WorkerProcess:
        """Start ``python -m trainyard.worker`` on this stack and wait until it consumes."""
        worker = WorkerProcess.start(self.env(**env), self.folder / f"worker-{len(self.workers)}.log", concurrency)
        self.workers.append(worker)
        return worker

    def send(self, run_id: str) -> None:
        """Send a run to the workers through the API's queue."""
        self.queue.send(run_id)

    def create(self, spec: dict[str, Any]) -> str:
        """A queued run of ``spec`` (as the API creates it), not yet sent."""
        with self.Session() as s, s.begin():
            run = repo.create_run(
                session=s, spec=spec, name=spec["name"], seed=spec.get("seed", 0), tags=[], notes="",
                epochs_total=spec["epochs"],
            )
            return run.id

    def submit(self, spec: dict[str, Any]) -> str:
        """Create a run and send it, as ``POST /api/runs`` does."""
        run_id = self.create(spec)
        self.send(run_id)
        return run_id

    def run(self, run_id: str) -> Any:
        with self.Session() as s:
            return repo.get_run(session=s, run_id=run_id)

    def runs(self) -> list[Any]:
        """Every run of the stack, newest first."""
        with self.Session() as s:
            return repo.list_runs(session=s, limit=repo.MAX_LIST_LIMIT)[0]

    def wait_finished(self, run_id: str, timeout: float = 60) -> Any:
        return wait_for(lambda: (run := self.run(run_id)).finished and run, timeout, f"run {run_id} to finish")

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        with self.Session() as s:
            return repo.get_epochs(session=s, run_id=run_id)

    def weights(self, run_id: str, epoch: int | None = None) -> tuple[int, bytes] | None:
        with self.Session() as s:
            return repo.get_weights(session=s, run_id=run_id, epoch=epoch)

    def weight_epochs(self, run_id: str) -> list[int]:
        with self.Session() as s:
            return repo.list_weight_epochs(session=s, run_id=run_id)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.queue.close()
        self.Session.kw["bind"].dispose()


class WorkerProcess:
    """A ``python -m trainyard.worker`` subprocess in a process group of its own, logging to a file."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path):
        self.process, self.log = process, log

    @classmethod
    def start(cls, env: dict[str, str], log: Path, concurrency: int = 1, timeout: float = 30) -> WorkerProcess:
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-P", "-m", "trainyard", "worker", "--concurrency", str(concurrency),
                 "--loglevel", "info"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        worker = cls(process, log)
        try:
            wait_for(lambda: " ready." in worker.output() or process.poll() is not None, timeout, "a worker to start")
            assert process.poll() is None, f"the worker exited:\n{worker.output()}"
        except BaseException:
            worker.kill()
            raise
        return worker

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the worker's main process."""
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the whole worker (main and pool processes), as a machine that dies would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # pool processes outliving their parent
        except ProcessLookupError:
            pass


def local_stack(folder: Path, queue: str, lease: float) -> Stack:
    data = folder / "data"
    settings = Settings.from_env(
        {"TRAINYARD_DATA_DIR": str(data), "TRAINYARD_QUEUE": queue, "TRAINYARD_LEASE_SECONDS": str(lease)}
    )
    upgrade(settings.database_url)
    declare_queue(settings)  # as `trainyard up` should before starting the API and the worker
    sender = CeleryQueue(settings.broker_url, queue_name=queue)
    return Stack("local", settings, make_sessionmaker(make_engine(settings.database_url)), folder, sender)


def redis_stack(folder: Path, queue: str, lease: float, database_url: str, redis_url: str) -> Stack:
    settings = Settings.from_env(
        {
            "TRAINYARD_DATA_DIR": str(folder / "data"),
            "TRAINYARD_DATABASE_URL": database_url,
            "TRAINYARD_BROKER_URL": redis_url,
            "TRAINYARD_QUEUE": queue,
            "TRAINYARD_LEASE_SECONDS": str(lease),
        }
    )
    upgrade(settings.database_url)
    sender = CeleryQueue(redis_url, queue_name=queue)
    return Stack("redis", settings, make_sessionmaker(make_engine(settings.database_url)), folder, sender)


