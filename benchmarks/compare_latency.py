"""Latency of ``GET /api/compare`` over 50 runs x 5,000 epochs with ``max_points=1000``, on PostgreSQL.

Creates a fresh database on the server (``TRAINYARD_TEST_POSTGRES_URL``,
default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, used only
to create and drop it), migrates it, writes the runs and their epochs with
``repo.write_epochs`` in batches, then times the request through Flask's test
client with a read token and prints a Markdown table beside the target.  The
database is dropped at the end.

    python benchmarks/compare_latency.py [--runs 50] [--epochs 5000] [--repeat 20] [--seeds K]

With ``--seeds K`` the runs come in groups of K that differ only in their
seed, and the request is ``GET /api/compare?...&group=seed`` (the groups'
bands read every epoch of every run, then downsample).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from record import add_option, record
from servers import postgres_database

from trainyard.service.api.schemas import DEFAULT_COMPARE_FIELDS
from trainyard.service.app import create_app
from trainyard.service.config import Settings
from trainyard.service.operations import run_fields
from trainyard.service.storage import repo
from trainyard.service.storage.migrate import upgrade
from trainyard.trainer import TrainSpec

TARGET_MS = 300.0
BATCH = 1000


class NullQueue:
    """A run queue that sends nothing: the benchmark creates no runs through the API."""

    def send(self, run_id: str) -> None:
        pass

    def ping(self) -> None:
        pass


def _spec(index: int, seeds: int = 1) -> TrainSpec:
    """Run ``index``'s spec; with ``seeds`` above 1, runs come in groups of that many differing only in seed."""
    point = index // seeds
    return TrainSpec.model_validate(
        {
            "name": f"bench-{index}",
            "dataset": {"name": "xor"},
            "model": {"type": "mlp", "hidden": [{"units": 4 + point % 8, "activation": "tanh"}]},
            "optimizer": {"name": "sgd", "lr": 0.01 * (1 + point % 10), "momentum": 0.9},
            "epochs": 5000,
            "batch_size": 4,
            "seed": index,
        }
    )


def _epoch_rows(start: int, stop: int, rng: np.random.Generator) -> list[dict[str, float | int]]:
    rows = []
    for epoch in range(start, stop):
        loss = 1.0 / math.sqrt(epoch) + float(rng.normal(0, 0.01))
        rows.append(
            {
                "epoch": epoch,
                "train_loss": loss,
                "val_loss": loss * 1.1,
                "train_accuracy": 1.0 - loss / 2,
                "val_accuracy": 1.0 - loss / 1.8,
                "lr": 0.1,
                "seconds": 0.01,
            }
        )
    return rows


def _fill(app, runs: int, epochs: int, seeds: int = 1) -> tuple[list[str], str]:
    """Create the runs and their epochs; returns their ids and a read token."""
    Session = app.extensions["trainyard"].Session
    rng = np.random.default_rng(0)
    ids = []
    with Session() as s, s.begin():
        token, _ = repo.create_token(session=s, scope="read", name="bench")
        for index in range(runs):
            ids.append(repo.create_run(session=s, **run_fields(_spec(index, seeds))).id)
    for run_id in ids:
        for start in range(1, epochs + 1, BATCH):
            with Session() as s, s.begin():
                rows = _epoch_rows(start, min(start + BATCH, epochs + 1), rng)
                repo.write_epochs(session=s, run_id=run_id, rows=rows)
    return ids, token


def _breakdown(app, ids: list[str], max_points: int, body: dict, repeat: int) -> tuple[float, float]:
    """Median ms of the request's two main parts: the curves (``repo.get_curves``) and the JSON encoding."""
    Session = app.extensions["trainyard"].Session
    fields = list(DEFAULT_COMPARE_FIELDS)
    curves, encoding = [], []
    for _ in range(max(3, repeat // 4)):
        started = time.perf_counter()
        with Session() as s, s.begin():
            repo.get_curves(session=s, run_ids=ids, fields=fields, max_points=max_points)
        curves.append((time.perf_counter() - started) * 1000)
        with app.app_context():
            started = time.perf_counter()
            app.json.dumps(body)
            encoding.append((time.perf_counter() - started) * 1000)
    return statistics.median(curves), statistics.median(encoding)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=5000)
    parser.add_argument("--max-points", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=1, help="Group the runs over seeds, this many per group.")
    add_option(parser)
    args = parser.parse_args(argv)

    app = None
    with postgres_database() as url:
        try:
            upgrade(url)
            with tempfile.TemporaryDirectory() as data_dir:
                settings = Settings(data_dir=Path(data_dir), database_url=url, broker_url="memory://", auth=True)
                app = create_app(settings, queue=NullQueue())
                started = time.perf_counter()
                ids, token = _fill(app, args.runs, args.epochs, args.seeds)
                fill_s = time.perf_counter() - started
                client = app.test_client()
                path = f"/api/compare?runs={','.join(ids)}&max_points={args.max_points}"
                if args.seeds > 1:
                    path += "&group=seed"
                headers = {"Authorization": f"Bearer {token}"}
                response = client.get(path, headers=headers)  # warm-up: connection pool, compiled queries
                if response.status_code != 200:
                    print(f"GET /api/compare failed: {response.status_code} {response.get_data(as_text=True)[:500]}")
                    return 1
                body = response.get_json()
                points = sum(len(curve["epoch"]) for curve in body["curves"].values())
                size = len(response.get_data())
                times = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    response = client.get(path, headers=headers)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200
                breakdown = _breakdown(app, ids, args.max_points, body, args.repeat)
        finally:
            if app is not None:
                app.extensions["trainyard"].engine.dispose()

    median, p95 = statistics.median(times), _percentile(times, 95)
    verdict = "yes" if p95 <= TARGET_MS else "no"
    grouped = f", group=seed ({args.seeds} seeds per group)" if args.seeds > 1 else ""
    print(
        f"`GET /api/compare`: {args.runs} runs x {args.epochs:,} epochs, max_points={args.max_points}{grouped}, "
        f"PostgreSQL, Flask test client, {args.repeat} requests after one warm-up "
        f"({points:,} points, {size / 1e6:.1f} MB of JSON; data written in {fill_s:.0f} s)\n"
    )
    print("| request | median ms | p95 ms | target | met (p95) |")
    print("|---|---:|---:|---:|:---:|")
    print(f"| compare {args.runs} runs | {median:.0f} | {p95:.0f} | <= {TARGET_MS:.0f} ms | {verdict} |")
    curves_ms, json_ms = breakdown
    print(
        f"\nOf which (medians): curves (`repo.get_curves`, {args.runs} runs) {curves_ms:.0f} ms, "
        f"JSON encoding {json_ms:.0f} ms."
    )
    record(args.record, benchmark="compare latency" + (" grouped" if grouped else ""),
           figure=f"GET /api/compare, {args.runs} runs x {args.epochs:,} epochs, max_points={args.max_points}"
           f"{grouped} (median; p95 {p95:.0f} ms)", unit="ms",
           ours=median, reference="target", reference_value=TARGET_MS, ratio=median / TARGET_MS,
           target=f"<= {TARGET_MS:.0f} ms", met=p95 <= TARGET_MS)
    return 0 if p95 <= TARGET_MS else 2


if __name__ == "__main__":
    sys.exit(main())
