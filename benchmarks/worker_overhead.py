"""Tracking overhead of the worker: a digits run of 30 epochs, weights every epoch, inside the worker ÷ ``fit`` alone.

"Inside the worker" is :func:`trainyard.worker.training.train_run`, the function the
Celery task calls: claim, load, train with every epoch's metrics and weights
buffered and flushed (with the checkpoint and the lease) to a real database,
finish with the summary.  "``fit`` alone" trains the same spec with no
callback.  Each repeat creates a fresh run; the two are interleaved and the
table shows medians.  Databases: a SQLite file in a temporary folder and a
fresh PostgreSQL database (``TRAINYARD_TEST_POSTGRES_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, used only to create
and drop it).

    python benchmarks/worker_overhead.py [--repeat 15] [--epochs 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from record import add_option, record
from servers import postgres_database

from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.migrate import upgrade
from trainyard.trainer import fit
from trainyard.worker.tasks import worker_name
from trainyard.worker.training import Context, train_run

TARGET = 1.2


def digits_spec(epochs: int) -> dict:
    return {
        "name": "digits-overhead",
        "dataset": {"name": "digits", "test_fraction": 0.2},
        "model": {"type": "mlp", "hidden": [{"units": 64, "activation": "relu"}]},
        "optimizer": {"name": "adam", "lr": 0.005},
        "epochs": epochs,
        "batch_size": 32,
        "seed": 0,
    }


def measure(url: str, spec: dict, repeat: int) -> tuple[float, float, float, int]:
    """Median seconds of ``fit`` alone and of ``train_run``, the median of their paired ratios, and the
    bytes of weights one run stores.  Pairs (one of each, back to back) share the machine's load of the
    moment, so their ratio is steadier than the ratio of the medians."""
    upgrade(url)
    engine = make_engine(url)
    Session = make_sessionmaker(engine)
    ctx = Context(Session=Session, worker=worker_name(), lease_seconds=30.0, flush_seconds=0.5,
                  weights_budget_bytes=64 * 1024 * 1024)
    alone, worker = [], []
    try:
        for attempt in range(repeat + 1):  # the first round warms up (imports, connections, dataset cache)
            with Session() as s, s.begin():
                run_id = repo.create_run(session=s, spec=spec, name=spec["name"], seed=0, tags=[], notes="",
                                         epochs_total=spec["epochs"]).id
            started = time.perf_counter()
            fit(spec)
            fit_s = time.perf_counter() - started
            started = time.perf_counter()
            outcome = train_run(run_id, ctx=ctx)
            worker_s = time.perf_counter() - started
            assert outcome == "succeeded", outcome
            if attempt:
                alone.append(fit_s)
                worker.append(worker_s)
        with Session() as s:
            stored = sum(len(repo.get_weights(session=s, run_id=run_id, epoch=e)[1])
                         for e in repo.list_weight_epochs(session=s, run_id=run_id))
    finally:
        engine.dispose()
    ratios = [w / a for w, a in zip(worker, alone)]
    return statistics.median(alone), statistics.median(worker), statistics.median(ratios), stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=30)
    add_option(parser)
    args = parser.parse_args(argv)
    spec = digits_spec(args.epochs)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        results["SQLite"] = measure(f"sqlite:///{folder}/trainyard.db", spec, args.repeat)
    with postgres_database() as url:
        results["PostgreSQL"] = measure(url, spec, args.repeat)

    print(f"Digits, {args.epochs} epochs, weights every epoch; median of {args.repeat} interleaved repeats\n")
    print("| database | `fit` alone ms | inside the worker ms | ratio (paired) | target | met |")
    print("|---|---:|---:|---:|---:|:---:|")
    worst = 0.0
    for name, (alone, worker, ratio, _) in results.items():
        worst = max(worst, ratio)
        print(f"| {name} | {alone * 1000:.0f} | {worker * 1000:.0f} | {ratio:.2f}x | <= {TARGET}x | "
              f"{'yes' if ratio <= TARGET else 'no'} |")
        record(args.record, benchmark="tracking overhead", figure=f"digits {args.epochs} epochs, weights every "
               f"epoch, {name}", unit="ms", ours=worker * 1000, reference="fit alone", reference_value=alone * 1000,
               ratio=ratio, target=f"<= {TARGET}x", met=ratio <= TARGET)
    stored = results["PostgreSQL"][3]
    print(f"\nWeights stored per run: {stored / 1024:.0f} KiB ({args.epochs} snapshots).")
    return 0 if worst <= TARGET else 2


if __name__ == "__main__":
    sys.exit(main())
