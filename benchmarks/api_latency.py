"""``POST /api/runs`` under gunicorn on PostgreSQL and Redis: latency (p50, p99) and throughput.

Starts ``trainyard api`` (gunicorn's gthread workers, as deployed)
against a fresh PostgreSQL database (``TRAINYARD_TEST_POSTGRES_URL``,
default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, used only
to create and drop it) and a Redis queue of its own
(``TRAINYARD_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``), with no
worker reading it, then sends requests from client threads, each with its
own keep-alive connection.  The reference is the floor of the same stack:
``GET /healthz`` (no database, no broker, no auth) on the same server with
the same clients.  Load generator and server share the machine's cores, so
the numbers are those of a whole stack on one host.

    python benchmarks/api_latency.py [--requests 2000] [--clients 8] [--workers 2] [--threads 4]

Prints a Markdown table; the database and the queue's Redis keys are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import numpy as np
import redis
import servers
from record import add_option, record
from servers import free_port, postgres_database, wait_ready
from sqlalchemy import text

from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.migrate import upgrade

SPEC = {
    "name": "bench-xor",
    "dataset": {"name": "xor"},
    "model": {"type": "mlp", "hidden": [{"units": 8, "activation": "tanh"}]},
    "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
    "epochs": 100,
    "batch_size": 4,
    "seed": 0,
    "tags": ["bench"],
}


def _load(send, requests: int, clients: int) -> tuple[list[float], float]:
    """Run ``requests`` calls of ``send(client)`` from ``clients`` threads; per-request ms and wall seconds."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def work(client: httpx.Client) -> None:
        mine = []
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            started = time.perf_counter()
            send(client)
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    pool = [httpx.Client(timeout=30) for _ in range(clients)]
    threads = [threading.Thread(target=work, args=(client,)) for client in pool]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    for client in pool:
        client.close()
    return latencies, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    add_option(parser)
    args = parser.parse_args(argv)

    redis_url = servers.redis_url()
    queue = f"trainyard-bench-{secrets.token_hex(4)}"
    server = None
    with postgres_database() as url:
        try:
            upgrade(url)
            engine = make_engine(url)
            with make_sessionmaker(engine)() as s, s.begin():
                token, _ = repo.create_token(session=s, scope="write", name="bench")
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            with tempfile.TemporaryDirectory() as data_dir:
                env = dict(
                    os.environ,
                    TRAINYARD_DATA_DIR=data_dir,
                    TRAINYARD_DATABASE_URL=url,
                    TRAINYARD_BROKER_URL=redis_url,
                    TRAINYARD_QUEUE=queue,
                )
                command = [
                    sys.executable, "-P", "-m", "trainyard", "api", "--port", str(port),
                    "--workers", str(args.workers), "--threads", str(args.threads),
                ]  # fmt: skip
                server = subprocess.Popen(command, env={**env, "GUNICORN_CMD_ARGS": "--log-level warning"})
                wait_ready(base, server)
                headers = {"Authorization": f"Bearer {token}"}

                def post(client: httpx.Client) -> None:
                    response = client.post(f"{base}/api/runs", json=SPEC, headers=headers)
                    assert response.status_code == 201, response.text

                def health(client: httpx.Client) -> None:
                    assert client.get(f"{base}/healthz").status_code == 200

                warmup = max(50, args.requests // 20)
                _load(post, warmup, args.clients)
                _load(health, warmup, args.clients)
                results = {"POST /api/runs": _load(post, args.requests, args.clients)}
                results["GET /healthz (reference)"] = _load(health, args.requests, args.clients)
                with engine.connect() as connection:
                    created = connection.execute(text("SELECT count(*) FROM runs")).scalar()
                client = redis.Redis.from_url(redis_url)
                sent = client.llen(queue)
                client.delete(queue, f"_kombu.binding.{queue}")
                client.close()
            engine.dispose()
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)

    print(
        f"gunicorn {args.workers} gthread workers x {args.threads} threads, PostgreSQL + Redis on 127.0.0.1, "
        f"{args.clients} client threads on the same {os.cpu_count()} cores, {args.requests} requests each "
        f"after {warmup} warm-up; {created} runs created, {sent} messages queued\n"
    )
    print("| request | p50 ms | p99 ms | requests/s |")
    print("|---|---:|---:|---:|")
    rates = {}
    for label, (latencies, wall) in results.items():
        rates[label] = len(latencies) / wall
        p50, p99 = statistics.median(latencies), float(np.percentile(latencies, 99))
        print(f"| {label} | {p50:.1f} | {p99:.1f} | {rates[label]:.0f} |")
    post_rate, floor_rate = rates.values()
    print(f"\nPOST /api/runs reaches {post_rate / floor_rate:.2f}x the throughput of the stack's floor.")
    (post, _), (floor, _) = results.values()
    for name, q in (("p50", 50), ("p99", 99)):
        ours, reference = float(np.percentile(post, q)), float(np.percentile(floor, q))
        record(args.record, benchmark="API latency", figure=f"POST /api/runs {name}, {args.clients} clients, "
               "gunicorn, PostgreSQL + Redis", unit="ms", ours=ours, reference="GET /healthz",
               reference_value=reference, ratio=ours / reference, target="reported", met=None)
    record(args.record, benchmark="API throughput", figure=f"POST /api/runs, {args.clients} clients", unit="req/s",
           ours=post_rate, reference="GET /healthz", reference_value=floor_rate, ratio=post_rate / floor_rate,
           target="reported", met=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
