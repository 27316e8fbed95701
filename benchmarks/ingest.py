"""Epoch rows per second into PostgreSQL through the worker's writer, in the worker's batches.

The worker writes a run's new epochs once per flush (at most every
``TRAINYARD_FLUSH_SECONDS``), so a batch holds the epochs of half a second:
about 70 for digits, 500 for XOR (``--batch``), with
``repo.write_epochs`` (on PostgreSQL one ``INSERT ... SELECT FROM unnest(...)``
of column arrays).  Each batch is one transaction, as in the worker.
References, on the same rows:

- one multi-row ``INSERT ... VALUES`` statement per batch (SQLAlchemy's executemany), a transaction each;
- one INSERT statement per row, one transaction per batch;
- one transaction per row (what a client logging one metric call at a time
  causes: MLflow users report 90 s for 1,000 single-metric calls).

Rows carry every field (six metrics and two per-layer norm lists).  Beside
them, a tracked run's epochs (``repo.write_tracked_epochs``, what
``POST /api/runs/<id>/epochs`` calls): the two losses and four custom metrics
per epoch, upserted, with the run's summary recomputed per batch.  A fresh
PostgreSQL database is made on ``TRAINYARD_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) and dropped after.

    python benchmarks/ingest.py [--rows 20000] [--batch 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from record import add_option, record
from servers import postgres_database
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.migrate import upgrade
from trainyard.service.storage.models import Epoch, utcnow

TARGET = 20_000.0


def epoch_rows(count: int) -> list[dict[str, Any]]:
    """``count`` epochs as the worker buffers them (``EpochRecord.metrics()`` of a two-layer network)."""
    rows = []
    for epoch in range(1, count + 1):
        loss = 1.0 / math.sqrt(epoch)
        rows.append({
            "epoch": epoch, "train_loss": loss, "val_loss": loss * 1.1, "train_accuracy": 1 - loss / 2,
            "val_accuracy": 1 - loss / 1.8, "lr": 0.01, "seconds": 0.004,
            "weight_norms": [3.2 + loss, 1.7 - loss / 3], "grad_norms": [0.1 * loss, 0.05 * loss],
        })
    return rows


def new_run(Session: sessionmaker[Session], rows: int) -> str:
    with Session() as s, s.begin():
        return repo.create_run(session=s, spec={}, name="ingest", seed=0, tags=[], notes="", epochs_total=rows).id


def tracked_rows(count: int) -> list[dict[str, Any]]:
    """``count`` epochs of a tracked run: two built-in metrics and four custom ones."""
    return [{"epoch": row["epoch"], "train_loss": row["train_loss"], "val_loss": row["val_loss"],
             "bleu": 20 * row["train_accuracy"], "f1": row["val_accuracy"], "val/top5": 0.9, "grad_scale": 1.0}
            for row in epoch_rows(count)]


def new_tracked_run(Session: sessionmaker[Session], rows: int) -> str:
    with Session() as s, s.begin():
        return repo.create_tracked_run(session=s, name="ingest", params={}, tags=[], notes="").id


def tracked(Session: sessionmaker[Session], run_id: str, rows: list[dict[str, Any]], batch: int) -> None:
    """A tracked run's epochs: ``repo.write_tracked_epochs`` once per batch, a transaction each."""
    for start in range(0, len(rows), batch):
        with Session() as s, s.begin():
            repo.write_tracked_epochs(session=s, run_id=run_id, rows=rows[start : start + batch])


def batched(Session: sessionmaker[Session], run_id: str, rows: list[dict[str, Any]], batch: int) -> None:
    """Ours: ``repo.write_epochs`` once per batch, a transaction each."""
    for start in range(0, len(rows), batch):
        with Session() as s, s.begin():
            repo.write_epochs(session=s, run_id=run_id, rows=rows[start : start + batch])


def values_list(Session: sessionmaker[Session], run_id: str, rows: list[dict[str, Any]], batch: int) -> None:
    """Reference: one multi-row INSERT per batch (SQLAlchemy's executemany of a VALUES list), a transaction each."""
    for start in range(0, len(rows), batch):
        with Session() as s, s.begin():
            s.execute(insert(Epoch), [_row_values(run_id, row) for row in rows[start : start + batch]])


def _row_values(run_id: str, row: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": run_id, "recorded_at": utcnow(), **row}


def row_at_a_time(Session: sessionmaker[Session], run_id: str, rows: list[dict[str, Any]], batch: int) -> None:
    """Reference: an INSERT per row, a transaction per batch."""
    for start in range(0, len(rows), batch):
        with Session() as s, s.begin():
            for row in rows[start : start + batch]:
                s.execute(insert(Epoch).values(_row_values(run_id, row)))


def transaction_per_row(Session: sessionmaker[Session], run_id: str, rows: list[dict[str, Any]], batch: int) -> None:
    """Reference: a transaction per row, as one logging call per epoch does."""
    for row in rows:
        with Session() as s, s.begin():
            s.execute(insert(Epoch).values(_row_values(run_id, row)))


def rate(Session: sessionmaker[Session], write: Callable[..., None], rows: list[dict[str, Any]], batch: int,
         repeat: int, make: Callable[[sessionmaker[Session], int], str] = new_run) -> float:
    """Median rows per second of ``write`` over ``repeat`` fresh runs (made by ``make``)."""
    rates = []
    for _ in range(repeat):
        run_id = make(Session, len(rows))
        started = time.perf_counter()
        write(Session, run_id, rows, batch)
        rates.append(len(rows) / (time.perf_counter() - started))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    add_option(parser)
    args = parser.parse_args(argv)
    rows = epoch_rows(args.rows)
    with postgres_database() as url:
        upgrade(url)
        engine = make_engine(url)
        Session = make_sessionmaker(engine)
        try:
            batched(Session, new_run(Session, 1000), rows[:1000], args.batch)  # warm-up
            ours = rate(Session, batched, rows, args.batch, args.repeat)
            values = rate(Session, values_list, rows, args.batch, args.repeat)
            per_row = rate(Session, row_at_a_time, rows, args.batch, args.repeat)
            few = rows[: min(len(rows), 2000)]  # a transaction per row is slow: time fewer rows
            per_transaction = rate(Session, transaction_per_row, few, args.batch, args.repeat)
            logged = rate(Session, tracked, tracked_rows(args.rows), args.batch, args.repeat, make=new_tracked_run)
        finally:
            engine.dispose()

    print(f"Epoch rows into PostgreSQL, batches of {args.batch} (median of {args.repeat})\n")
    print("| writer | rows/s | ours ÷ it |")
    print("|---|---:|---:|")
    print(f"| `repo.write_epochs` per batch (ours, the worker's) | {ours:,.0f} | 1.0x |")
    print(f"| a multi-row INSERT per batch (SQLAlchemy executemany) | {values:,.0f} | {ours / values:.1f}x |")
    print(f"| an INSERT per row, a transaction per batch | {per_row:,.0f} | {ours / per_row:.1f}x |")
    print(f"| a transaction per row | {per_transaction:,.0f} | {ours / per_transaction:.1f}x |")
    print(f"\nA tracked run's epochs (2 built-in and 4 custom metrics), `repo.write_tracked_epochs` per batch: "
          f"{logged:,.0f} rows/s.")
    print(f"\nTarget: >= {TARGET:,.0f} rows/s: {'met' if ours >= TARGET else 'not met'}.")
    record(args.record, benchmark="ingestion", figure=f"epoch rows into PostgreSQL, batches of {args.batch}",
           unit="rows/s", ours=ours, reference="an INSERT per row", reference_value=per_row, ratio=ours / per_row,
           target=f">= {TARGET:,.0f} rows/s", met=ours >= TARGET)
    return 0 if ours >= TARGET else 2


if __name__ == "__main__":
    sys.exit(main())
