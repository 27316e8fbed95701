"""Steps per second of a run logged from the user's own loop, through the Python client and the real HTTP API.

Starts ``trainyard api`` (gunicorn, as deployed) against a fresh PostgreSQL
database (``TRAINYARD_TEST_POSTGRES_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, used only to create
and drop it), then logs ``--steps`` epochs of four custom metrics with
``Client.track``: ``run.log`` in the user's loop, batches sent by the client's
own thread, the run finished when the last is stored.  Ours is the whole
path, from the first ``log`` to the finish's answer.  The reference, in the
same run, is the worker's own path into the same database: ``repo.write_epochs``
in the worker's batches of 500, a transaction each, of built-in metrics.
For scale (not measured here): MLflow 3.17's server took about 1,200 steps/s
of four metrics sent with ``log_batch`` over HTTP on this machine's PostgreSQL.

    python benchmarks/tracked_ingest.py [--steps 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import servers
from record import add_option, record
from servers import free_port, postgres_database, wait_ready

from trainyard.client import Client
from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.migrate import upgrade

#: The issue's target: steps of four metrics a second, through HTTP and the client.
TARGET = 10_000.0


def tracked(client: Client, steps: int) -> tuple[float, float]:
    """Steps a second of one tracked run of ``steps`` epochs, and the median microseconds of a ``log`` call."""
    calls: list[float] = []
    started = time.perf_counter()
    with client.track("ingest", params={"steps": steps}) as run:
        for step in range(1, steps + 1):
            loss = 1.0 / math.sqrt(step)
            before = time.perf_counter()
            run.log(step, loss=loss, accuracy=1 - loss / 2, grad_norm=0.1 * loss, bleu=20 + loss)
            calls.append(time.perf_counter() - before)
    seconds = time.perf_counter() - started
    shown = client.run(run.id)
    assert shown["status"] == "succeeded" and shown["epochs_done"] == steps, shown
    return steps / seconds, statistics.median(calls) * 1e6


def worker_path(url: str, steps: int) -> float:
    """Rows a second of the worker's writer into the same database (batches of 500, a transaction each)."""
    engine = make_engine(url)
    Session = make_sessionmaker(engine)
    with Session() as s, s.begin():
        run_id = repo.create_run(session=s, spec={}, name="reference", seed=0, tags=[], notes="",
                                 epochs_total=steps).id
    rows = [{"epoch": step, "train_loss": 1.0 / math.sqrt(step), "train_accuracy": 0.5, "val_loss": 0.25,
             "val_accuracy": 0.75} for step in range(1, steps + 1)]
    started = time.perf_counter()
    for start in range(0, steps, 500):
        with Session() as s, s.begin():
            repo.write_epochs(session=s, run_id=run_id, rows=rows[start : start + 500])
    seconds = time.perf_counter() - started
    engine.dispose()
    return steps / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    add_option(parser)
    args = parser.parse_args(argv)

    server = None
    with postgres_database() as url, tempfile.TemporaryDirectory() as data_dir:
        try:
            upgrade(url)
            engine = make_engine(url)
            with make_sessionmaker(engine)() as s, s.begin():
                token, _ = repo.create_token(session=s, scope="write", name="bench")
            engine.dispose()
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = dict(os.environ, TRAINYARD_DATA_DIR=data_dir, TRAINYARD_DATABASE_URL=url,
                       TRAINYARD_BROKER_URL=servers.redis_url(), GUNICORN_CMD_ARGS="--log-level warning")
            server = subprocess.Popen([sys.executable, "-P", "-m", "trainyard", "api", "--port", str(port),
                                       "--workers", "1", "--threads", "8"], env=env)
            wait_ready(base, server)
            with Client(base, token) as client:
                tracked(client, 500)  # warm-up: connections, imports
                ours = [tracked(client, args.steps) for _ in range(args.repeat)]
            reference = [worker_path(url, args.steps) for _ in range(args.repeat)]
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)

    rate = statistics.median(rate for rate, _ in ours)
    log_us = statistics.median(us for _, us in ours)
    floor = statistics.median(reference)
    print(f"{args.steps:,} steps of 4 metrics, median of {args.repeat}; gunicorn 1 worker x 8 threads, PostgreSQL "
          f"on 127.0.0.1, client and server on the same {os.cpu_count()} cores\n")
    print("| path | steps/s | ratio | target |")
    print("|---|---:|---:|---|")
    print(f"| tracked run: Client.track over HTTP (ours) | {rate:,.0f} | {rate / floor:.2f}x | >= {TARGET:,.0f} |")
    print(f"| the worker's writer, in-process (reference) | {floor:,.0f} | 1.00x | |")
    print(f"\nrun.log: {log_us:.1f} us a call (median); {'meets' if rate >= TARGET else 'misses'} the target")
    record(args.record, benchmark="tracked ingest", figure=f"Client.track, {args.steps:,} steps of 4 metrics, HTTP",
           unit="steps/s", ours=rate, reference="worker's writer", reference_value=floor, ratio=rate / floor,
           target=f">= {TARGET:,.0f}", met=rate >= TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
