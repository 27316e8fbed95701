"""Queue throughput: XOR runs of 100 epochs through the workers, end to end, deployed or local.

Deployed (the default): two real ``python -m worker`` processes (concurrency
1 each) on a fresh PostgreSQL database (``TRAINYARD_TEST_POSTGRES_URL``,
default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, used only
to create and drop it) and a queue of its own on Redis
(``TRAINYARD_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``).
``--local``: one worker on SQLite and the SQLAlchemy broker in a temporary
data folder, as ``trainyard up`` runs it.  A round submits ``--runs`` runs as
the API does (a transaction creating the run, then ``CeleryQueue.send``) and
ends when every run has succeeded; runs/s is runs ÷ that time.  The
reference is the training alone: the same runs' ``fit`` in this process,
one after another, divided among the workers, the most they could do with
free bookkeeping.

    python benchmarks/queue_throughput.py [--runs 200] [--epochs 100] [--repeat 3] [--local]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import servers
from record import add_option, record
from servers import postgres_database
from sqlalchemy import func, select

from trainyard.service.celery_config import declare_queue
from trainyard.service.config import Settings
from trainyard.service.queue import CeleryQueue
from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.migrate import upgrade
from trainyard.service.storage.models import Run
from trainyard.trainer import fit

TARGET = 20.0  # runs/s, deployed


def xor_spec(index: int, epochs: int) -> dict:
    return {
        "name": f"xor-{index}",
        "dataset": {"name": "xor"},
        "model": {"type": "mlp", "hidden": [{"units": 8, "activation": "tanh"}]},
        "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
        "epochs": epochs,
        "batch_size": 4,
        "seed": index,
    }


@contextmanager
def workers(env: dict[str, str], folder: Path, count: int) -> Iterator[None]:
    """``count`` worker processes, started and consuming; stopped on exit."""
    processes, logs = [], []
    try:
        for index in range(count):
            log = folder / f"worker-{index}.log"
            with open(log, "wb") as out:
                processes.append(subprocess.Popen(
                    [sys.executable, "-P", "-m", "trainyard", "worker", "--concurrency", "1", "--loglevel", "info"],
                    env=env, stdout=out, stderr=subprocess.STDOUT,
                ))
            logs.append(log)
        deadline = time.monotonic() + 60
        while not all(" ready." in log.read_text(errors="replace") for log in logs):
            if time.monotonic() > deadline or any(process.poll() is not None for process in processes):
                raise RuntimeError("a worker did not start:\n" + "\n".join(log.read_text() for log in logs))
            time.sleep(0.1)
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def one_round(Session, queue: CeleryQueue, runs: int, epochs: int, offset: int) -> float:
    """Seconds from the first submission until every run of the round has succeeded."""
    started = time.perf_counter()
    ids = []
    for index in range(runs):
        spec = xor_spec(offset + index, epochs)
        with Session() as s, s.begin():
            ids.append(repo.create_run(session=s, spec=spec, name=spec["name"], seed=spec["seed"], tags=[], notes="",
                                       epochs_total=epochs).id)
        queue.send(ids[-1])
    query = select(func.count()).select_from(Run).where(Run.id.in_(ids), Run.status.in_(("queued", "running")))
    while True:
        with Session() as s:
            if s.scalar(query) == 0:
                break
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    with Session() as s:
        failed = s.scalar(select(func.count()).select_from(Run).where(Run.id.in_(ids), Run.status != "succeeded"))
    if failed:
        raise RuntimeError(f"{failed} runs did not succeed")
    return elapsed


@contextmanager
def deployed(folder: str) -> Iterator[tuple[str, str, str]]:
    """Database URL, broker URL and queue name of the deployed stack: a new PostgreSQL database, Redis."""
    redis_url, queue_name = servers.redis_url(), f"trainyard-bench-{secrets.token_hex(6)}"
    try:
        with postgres_database() as url:
            yield url, redis_url, queue_name
    finally:
        client = redis.Redis.from_url(redis_url)
        client.delete(queue_name, f"_kombu.binding.{queue_name}")
        client.close()


@contextmanager
def local(folder: str) -> Iterator[tuple[str, str, str]]:
    """Database URL, broker URL and queue name of ``trainyard up``: SQLite and the SQLAlchemy broker in ``folder``."""
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": folder})
    declare_queue(settings)
    yield settings.database_url, settings.broker_url, settings.queue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--local", action="store_true", help="one worker on SQLite and the SQLAlchemy broker")
    add_option(parser)
    args = parser.parse_args(argv)
    count, stack = (1, local) if args.local else (2, deployed)
    where = "SQLite + SQLAlchemy broker" if args.local else "Redis + PostgreSQL"

    started = time.perf_counter()
    for index in range(args.runs):
        fit(xor_spec(index, args.epochs))
    fit_alone = (time.perf_counter() - started) / count

    with tempfile.TemporaryDirectory() as folder, stack(folder) as (url, broker_url, queue_name):
        upgrade(url)
        env = {key: value for key, value in os.environ.items() if not key.startswith("TRAINYARD_")}
        env.update(TRAINYARD_DATABASE_URL=url, TRAINYARD_BROKER_URL=broker_url, TRAINYARD_QUEUE=queue_name,
                   TRAINYARD_DATA_DIR=folder)
        engine = make_engine(url)
        Session = make_sessionmaker(engine)
        queue = CeleryQueue(broker_url, queue_name=queue_name)
        try:
            with workers(env, Path(folder), count):
                one_round(Session, queue, 10, args.epochs, 10**6)  # warm-up: imports, connections, caches
                times = [one_round(Session, queue, args.runs, args.epochs, (r + 1) * args.runs)
                         for r in range(args.repeat)]
        finally:
            queue.close()
            engine.dispose()

    ours = args.runs / statistics.median(times)
    bound = args.runs / fit_alone
    print(f"{args.runs} XOR runs of {args.epochs} epochs, {count} worker process(es), {where}, "
          f"submit to all succeeded; median of {args.repeat} rounds\n")
    print("| | runs/s | ours ÷ it |")
    print("|---|---:|---:|")
    print(f"| through the queue (ours) | {ours:.1f} | 1.00x |")
    print(f"| training alone, {count} process(es) (bound) | {bound:.1f} | {ours / bound:.2f}x |")
    if not args.local:
        print(f"| target | {TARGET:.0f} | {ours / TARGET:.2f}x |")
    print(f"\nRounds: {', '.join(f'{t:.1f} s' for t in times)}.", end=" ")
    if args.local:
        print("No target for local mode.")
        record(args.record, benchmark="queue throughput", figure=f"{args.runs} XOR runs x {args.epochs} epochs, "
               f"1 worker, {where}", unit="runs/s", ours=ours, reference="training alone, 1 process",
               reference_value=bound, ratio=ours / bound, target="reported", met=None)
        return 0
    print(f"Target >= {TARGET:.0f} runs/s: {'met' if ours >= TARGET else 'not met'}.")
    record(args.record, benchmark="queue throughput", figure=f"{args.runs} XOR runs x {args.epochs} epochs, "
           f"{count} workers, {where}", unit="runs/s", ours=ours, reference=f"training alone, "
           f"{count} processes", reference_value=bound, ratio=ours / bound, target=f">= {TARGET:.0f} runs/s",
           met=ours >= TARGET)
    return 0 if ours >= TARGET else 2


if __name__ == "__main__":
    sys.exit(main())
