"""Weight snapshots into PostgreSQL through the worker's writer, beside SQLAlchemy's own multi-row insert.

A flush writes the snapshots it buffered with ``repo.write_weights_many``
(on PostgreSQL, psycopg's pipelined ``executemany`` with the bytes in
binary).  The reference is what SQLAlchemy does with the same rows: one
multi-row ``INSERT ... VALUES ... ON CONFLICT DO NOTHING``, its ``bytea``
values sent as hex text.  Two flushes' worth: a 30-epoch digits run
(64-64-10, 38 KB a snapshot) and ten snapshots of the dense benchmark's
784-256-128-10 network (1.9 MB each).  Each batch is one transaction on a
fresh run; the two writers alternate, and the table shows medians.  A fresh
PostgreSQL database is made on ``TRAINYARD_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) and dropped after.

    python benchmarks/weights_insert.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from record import add_option, record
from servers import postgres_database
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.migrate import upgrade
from trainyard.service.storage.models import Weights
from trainyard.worker.training import weights_npz

Writer = Callable[[Session, str, list[tuple[int, bytes]]], None]


def snapshots(sizes: list[int], count: int) -> list[tuple[int, bytes]]:
    """``count`` snapshots of a network of layer ``sizes``, as the worker encodes them."""
    rng = np.random.default_rng(0)
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        weights += [rng.normal(size=(fan_in, fan_out)), rng.normal(size=fan_out)]
    return [(epoch, weights_npz(weights)) for epoch in range(1, count + 1)]


def ours(session: Session, run_id: str, batch: list[tuple[int, bytes]]) -> None:
    repo.write_weights_many(session=session, run_id=run_id, snapshots=batch)


def sqlalchemy_insert(session: Session, run_id: str, batch: list[tuple[int, bytes]]) -> None:
    values = [{"run_id": run_id, "epoch": epoch, "data": data, "size_bytes": len(data)} for epoch, data in batch]
    statement = insert(Weights).on_conflict_do_nothing(index_elements=["run_id", "epoch"])
    session.execute(statement.returning(Weights.epoch), values).all()


def timed(Session: sessionmaker[Session], write: Writer, batch: list[tuple[int, bytes]]) -> float:
    """Seconds of one transaction that writes ``batch`` for a new run."""
    with Session() as s, s.begin():
        run_id = repo.create_run(session=s, spec={}, name="weights", seed=0, tags=[], notes="", epochs_total=1).id
    started = time.perf_counter()
    with Session() as s, s.begin():
        write(s, run_id, batch)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    add_option(parser)
    args = parser.parse_args(argv)
    workloads = {
        "30 snapshots of 64-64-10 (a digits run)": snapshots([64, 64, 10], 30),
        "10 snapshots of 784-256-128-10 (dense)": snapshots([784, 256, 128, 10], 10),
    }
    print(f"Weight snapshots into PostgreSQL, one transaction a batch (median of {args.repeat})\n")
    print("| batch | MB | `repo.write_weights_many` ms (ours) | SQLAlchemy multi-row INSERT ms | it ÷ ours |")
    print("|---|---:|---:|---:|---:|")
    with postgres_database() as url:
        upgrade(url)
        engine = make_engine(url)
        Session = make_sessionmaker(engine)
        try:
            for name, batch in workloads.items():
                times: dict[str, list[float]] = {"ours": [], "reference": []}
                for attempt in range(args.repeat + 1):  # the first round warms up
                    for key, write in (("ours", ours), ("reference", sqlalchemy_insert)):
                        seconds = timed(Session, write, batch)
                        if attempt:
                            times[key].append(seconds)
                mine, theirs = (statistics.median(times[key]) * 1000 for key in ("ours", "reference"))
                megabytes = sum(len(data) for _, data in batch) / 1e6
                print(f"| {name} | {megabytes:.2f} | {mine:.1f} | {theirs:.1f} | {theirs / mine:.2f}x |")
                record(args.record, benchmark="weights insert", figure=name, unit="ms", ours=mine,
                       reference="SQLAlchemy multi-row INSERT", reference_value=theirs, ratio=mine / theirs,
                       target="reported", met=None)
        finally:
            engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
