"""Tracked runs in storage: existing runs migrate as trained, a tracked run's epochs and custom metrics are written
idempotently, summarised as the worker does, read back like built-in metrics, and deleted with their run."""

from __future__ import annotations

import datetime as dt

import numpy as np
from factories import xor
from sqlalchemy import BigInteger, Boolean, Integer, String, column, func, insert, select, table

from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.migrate import upgrade
from trainyard.service.storage.models import Metric, PortableJSON, Run, UTCDateTime
from trainyard.worker.training import Summary

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)

#: The runs table as revision 0007 left it (the columns this test fills), without ``kind``.
RUNS_0007 = table("runs", *(column(name, String) for name in ("id", "name", "name_folded", "status", "notes")),
                  column("spec", PortableJSON), column("tags", PortableJSON), column("seed", BigInteger),
                  column("created_at", UTCDateTime()), column("updated_at", UTCDateTime()),
                  column("attempts", Integer), column("cancel_requested", Boolean), column("epochs_done", Integer),
                  column("epochs_total", Integer))


def test_migrating_makes_existing_runs_trained(database_url):
    upgrade(database_url, "0007")
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            for i, status in enumerate(("queued", "running", "succeeded")):
                connection.execute(insert(RUNS_0007).values(
                    id=f"{i:032x}", name=f"old {i}", name_folded=f"old {i}", status=status, notes="", spec=xor(),
                    tags=[], seed=0, created_at=T0, updated_at=T0, attempts=0, cancel_requested=False,
                    epochs_done=0, epochs_total=1))
        upgrade(database_url)
        Session = make_sessionmaker(engine)
        with Session() as s:
            assert [(run.kind, run.metric_keys) for run in s.scalars(select(Run))] == [("trained", None)] * 3
        with Session() as s, s.begin():  # and a silent tracked-run timeout never touches them
            assert repo.reconcile(session=s, queued_for=10**9, tracked_for=1, now=T0 + dt.timedelta(days=9)
                                      ).lost == []
    finally:
        engine.dispose()


def _tracked(Session, **params) -> str:
    with Session() as s, s.begin():
        return repo.create_tracked_run(session=s, name="hand", params=params, tags=["a", "a"], notes="").id


def test_a_tracked_run_starts_running_with_its_params_as_spec(Session):
    run_id = _tracked(Session, seed=7, model={"layers": [2, 1]})
    with Session() as s:
        run = s.get(Run, run_id)
        assert (run.kind, run.status, run.spec, run.seed, run.tags) == (
            "tracked", "running", {"seed": 7, "model": {"layers": [2, 1]}}, 7, ["a"])
        assert run.started_at == run.created_at and (run.epochs_total, run.lease_expires_at) == (0, None)
        assert repo.count_queued(session=s, token_id=None) == 0


def test_the_summary_is_the_workers(Session):
    """Written in two batches, out of order, with an epoch overwritten: the summary is what the worker's ``Summary``
    makes of the final epochs in order."""
    rng = np.random.default_rng(1)
    final = {e: {"epoch": e, "train_loss": float(rng.random()), "val_loss": None if e % 3 == 0 else float(rng.random()),
                 "train_accuracy": float(rng.random()), "val_accuracy": float(rng.random())} for e in range(1, 21)}
    run_id = _tracked(Session)
    with Session() as s, s.begin():
        repo.write_tracked_epochs(session=s, run_id=run_id, rows=[{**final[e], "val_loss": 0.0}
                                                                  for e in range(11, 21)])
    with Session() as s, s.begin():
        done = repo.write_tracked_epochs(session=s, run_id=run_id, rows=[final[e] for e in range(1, 21)])
    assert done == 20
    expected = Summary()
    for e in range(1, 21):
        expected.add(final[e])
    with Session() as s:
        run = s.get(Run, run_id)
        assert run.summary == expected.fields() and run.epochs_done == 20


def test_the_summary_kept_batch_by_batch_is_the_whole_runs(Session):
    """Epochs appended in batches (the usual case, summarised from each batch alone) give the summary a read of every
    epoch gives: ties, epochs without a validation loss, NaN and a loss that only improves late included."""
    rng = np.random.default_rng(2)
    rows = []
    for e in range(1, 61):
        loss = float(rng.choice([0.5, 0.25, float(rng.random())]))
        rows.append({"epoch": e, "train_loss": loss, "val_loss": None if e % 4 == 0 else float(rng.random()),
                     "train_accuracy": float(rng.random()),
                     "val_accuracy": None if e % 5 == 0 else float(rng.random())})
    rows[7]["val_loss"] = float("nan")
    run_id = _tracked(Session)
    for start in range(0, 60, 7):
        with Session() as s, s.begin():
            repo.write_tracked_epochs(session=s, run_id=run_id, rows=rows[start : start + 7])
        with Session() as s:
            assert s.get(Run, run_id).summary == repo.tracked_summary(session=s, run_id=run_id), start
    expected = Summary()
    for row in rows:
        expected.add({**row, "val_loss": None if row["val_loss"] != row["val_loss"] else row["val_loss"]})
    with Session() as s:
        assert s.get(Run, run_id).summary == expected.fields()


def test_custom_metrics_read_like_built_ins(Session):
    run_id = _tracked(Session)
    rows = [{"epoch": e, "train_loss": 1.0 / e, "bleu": float(e), **({"val/f1": e / 100} if e % 2 else {})}
            for e in range(1, 11)]
    with Session() as s, s.begin():
        repo.write_tracked_epochs(session=s, run_id=run_id, rows=rows)
    with Session() as s:
        assert repo.metric_keys(session=s, run_id=run_id) == ["bleu", "val/f1"]
        page, after = repo.get_epoch_page(session=s, run_id=run_id, since=2, limit=3)
        assert [(row["epoch"], row["bleu"], row["val/f1"]) for row in page] == [(3, 3.0, 0.03), (4, 4.0, None),
                                                                             (5, 5.0, 0.05)]
        assert after == 5
        curves = repo.get_curves(session=s, run_ids=[run_id, "f" * 32], fields=["bleu", "val/f1"], stride=2)
        assert curves[run_id]["epoch"].tolist() == [2, 4, 6, 8, 10]
        assert curves[run_id]["bleu"].tolist() == [2.0, 4.0, 6.0, 8.0, 10.0]
        assert np.isnan(curves[run_id]["val/f1"]).all()
        assert curves["f" * 32]["bleu"].tolist() == []


def test_custom_metrics_are_deleted_with_their_run(Session):
    run_id = _tracked(Session)
    with Session() as s, s.begin():
        repo.write_tracked_epochs(session=s, run_id=run_id, rows=[{"epoch": 1, "bleu": 1.0}])
    with Session() as s, s.begin():
        assert repo.delete_run(session=s, run_id=run_id)
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(Metric)) == 0
