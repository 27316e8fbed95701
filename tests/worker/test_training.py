"""The plain training function, called directly (no Celery) on a real database: SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import itertools
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from factories import DIGITS, DIVERGES, XOR, spec_of
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker
from worker_kit import npz_arrays, wait_for

from trainyard.service.documents import weights_layers
from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.migrate import upgrade
from trainyard.trainer import fit
from trainyard.worker.training import Context, SnapshotPlan, retrying, train_run, weights_npz

MB = 1024 * 1024


@pytest.fixture
def Session(url: str) -> sessionmaker[OrmSession]:
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def context(Session: sessionmaker[OrmSession]) -> Callable[..., Context]:
    """``context(**changes)``: a training context on the test database, flushing after every epoch."""
    names = itertools.count()

    def make(**changes: Any) -> Context:
        fields: dict[str, Any] = {
            "Session": Session, "worker": f"test:{next(names)}", "lease_seconds": 30.0, "flush_seconds": 0.0,
            "weights_budget_bytes": 64 * MB,
        }
        fields.update(changes)
        return Context(**fields)

    return make


def create(Session: sessionmaker[OrmSession], spec: dict[str, Any]) -> str:
    with Session() as s, s.begin():
        return repo.create_run(
            session=s, spec=spec, name=spec["name"], seed=spec["seed"], tags=[], notes="", epochs_total=spec["epochs"]
        ).id


def read(Session: sessionmaker[OrmSession], run_id: str) -> tuple[Any, list[dict[str, Any]], list[int]]:
    with Session() as s:
        run = repo.get_run(session=s, run_id=run_id)
        return run, repo.get_epochs(session=s, run_id=run_id), repo.list_weight_epochs(session=s, run_id=run_id)


def final_weights(Session: sessionmaker[OrmSession], run_id: str) -> dict[str, np.ndarray]:
    with Session() as s:
        return npz_arrays(repo.get_weights(session=s, run_id=run_id)[1])


def reference_weights(spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """The final weights of ``spec`` trained by ``fit`` alone, uninterrupted."""
    params = fit(spec).network.params
    return npz_arrays(weights_npz(params))


def assert_same_arrays(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].dtype == expected[name].dtype and np.array_equal(got[name], expected[name]), name


# --------------------------------------------------------------------------- snapshot plans


def test_snapshot_plan_keeps_every_epoch_within_budget():
    assert SnapshotPlan.for_run(epochs=100, snapshot_bytes=1000, budget_bytes=100_000, every=None).stride == 1


def test_snapshot_plan_strides_to_hold_the_budget():
    plan = SnapshotPlan.for_run(epochs=1000, snapshot_bytes=1000, budget_bytes=103_000, every=None)
    kept = [epoch for epoch in range(1, 1001) if plan.keeps(epoch)]
    assert plan.stride == 10 and len(kept) + 2 <= 103  # with the best and the last
    assert kept[0] == 1 and kept[1:3] == [10, 20]


def test_snapshot_plan_too_small_a_budget_keeps_the_first_only():
    plan = SnapshotPlan.for_run(epochs=50, snapshot_bytes=1000, budget_bytes=2000, every=None)
    assert [epoch for epoch in range(1, 51) if plan.keeps(epoch)] == [1]


def test_snapshot_every_overrides_the_budget():
    assert SnapshotPlan.for_run(epochs=100, snapshot_bytes=10**9, budget_bytes=1, every=7).stride == 7


def test_weights_npz_is_what_the_api_reads():
    weights = [np.ones((2, 3)), np.zeros(3), np.full((3, 1), 2.0), np.ones(1)]
    layers = weights_layers(weights_npz(weights))
    assert [np.shape(layer["W"]) for layer in layers] == [(2, 3), (3, 1)]
    assert set(npz_arrays(weights_npz(weights))) == {"W1", "b1", "W2", "b2"}


# --------------------------------------------------------------------------- train_run


def test_a_run_succeeds_with_every_epoch_weights_and_summary(Session, context):
    run_id = create(Session, XOR)
    assert train_run(run_id, ctx=context(flush_seconds=0.01)) == "succeeded"
    run, epochs, weight_epochs = read(Session, run_id)
    assert (run.status, run.error, run.attempts, run.epochs_done) == ("succeeded", None, 1, 200)
    assert run.stop_reason == "completed: all 200 epochs"
    assert [row["epoch"] for row in epochs] == list(range(1, 201))
    assert weight_epochs == list(range(1, 201))
    assert run.final_train_loss == pytest.approx(epochs[-1]["train_loss"]) and run.final_train_accuracy == 1.0
    losses = [row["train_loss"] for row in epochs]
    assert run.best_epoch == 1 + int(np.argmin(losses)) and run.best_val_loss is None
    assert run.lease_expires_at is None and run.finished_at is not None
    assert_same_arrays(final_weights(Session, run_id), reference_weights(XOR))


def test_a_succeeded_run_keeps_no_checkpoint(Session, context, monkeypatch):
    run_id = create(Session, spec_of(XOR, epochs=3))
    saved: list[int] = []
    save_checkpoint = repo.save_checkpoint

    def seen(**kwargs: Any) -> bool:  # watches the real write, which still happens
        saved.append(kwargs["epoch"])
        return save_checkpoint(**kwargs)

    monkeypatch.setattr(repo, "save_checkpoint", seen)
    assert train_run(run_id, ctx=context(flush_seconds=0.0)) == "succeeded"
    assert saved == [1, 2, 3]  # a flush after every epoch, each with its checkpoint
    with Session() as s:
        assert repo.get_checkpoint(session=s, run_id=run_id) is None


def test_validation_metrics_make_the_summary(Session, context):
    spec = spec_of(DIGITS, epochs=15)
    run_id = create(Session, spec)
    assert train_run(run_id, ctx=context()) == "succeeded"
    run, epochs, _ = read(Session, run_id)
    val_losses = [row["val_loss"] for row in epochs]
    assert run.best_val_loss == min(val_losses) and run.best_epoch == 1 + int(np.argmin(val_losses))
    assert run.best_val_accuracy == max(row["val_accuracy"] for row in epochs)
    assert run.final_val_accuracy == epochs[-1]["val_accuracy"] > 0.8


def test_early_stopping_ends_a_run_with_its_last_epoch_and_the_best(Session, context):
    spec = spec_of(DIGITS, epochs=300, early_stopping={"monitor": "val_loss", "patience": 3})
    run_id = create(Session, spec)
    assert train_run(run_id, ctx=context(flush_seconds=0.05)) == "succeeded"
    run, epochs, weight_epochs = read(Session, run_id)
    result = fit(spec)
    assert run.epochs_done == len(epochs) == len(result.history) < 300
    assert run.best_epoch == result.best_epoch and weight_epochs[-1] == run.epochs_done
    best = result.history[result.best_epoch - 1].val_loss
    assert run.stop_reason == (
        f"early stopping at epoch {run.epochs_done} of 300: val_loss did not improve on its best, {best:.4g} at epoch "
        f"{result.best_epoch}, for {run.epochs_done - result.best_epoch} epochs (patience 3)")


def test_a_second_delivery_finds_nothing_to_claim(Session, context):
    run_id = create(Session, spec_of(XOR, epochs=20))
    assert train_run(run_id, ctx=context()) == "succeeded"
    assert train_run(run_id, ctx=context()) == "not_claimed"
    run, epochs, _ = read(Session, run_id)
    assert run.attempts == 1 and len(epochs) == 20


def test_a_cancelled_queued_run_is_not_trained(Session, context):
    run_id = create(Session, XOR)
    with Session() as s, s.begin():
        repo.request_cancel(session=s, run_id=run_id)
    assert train_run(run_id, ctx=context()) == "not_claimed"
    run, epochs, _ = read(Session, run_id)
    assert (run.status, run.attempts, epochs, run.stop_reason) == ("cancelled", 0, [], "cancelled before it started")


def test_cancel_while_running_stops_and_keeps_the_epochs(Session, context):
    run_id = create(Session, XOR)
    polls = itertools.count()  # should_release is polled before the claim (0), then after every epoch

    def cancel_at_epoch_30() -> bool:  # a cancel arriving from the API meanwhile
        if next(polls) == 30:
            with Session() as s, s.begin():
                repo.request_cancel(session=s, run_id=run_id)
        return False

    assert train_run(run_id, ctx=context(should_release=cancel_at_epoch_30)) == "cancelled"
    run, epochs, weight_epochs = read(Session, run_id)
    assert run.status == "cancelled" and run.finished_at is not None and run.stop_reason == "cancelled at epoch 30"
    assert [row["epoch"] for row in epochs] == list(range(1, 31))  # seen at the flush after epoch 30
    assert weight_epochs[-1] == 30 and run.final_train_loss == epochs[-1]["train_loss"]


def test_divergence_fails_the_run_naming_the_epoch_and_keeps_earlier_epochs(Session, context):
    spec = spec_of(DIVERGES)
    run_id = create(Session, spec)
    assert train_run(run_id, ctx=context()) == "failed"
    run, epochs, _ = read(Session, run_id)
    assert run.status == "failed" and "diverged at epoch" in run.error
    diverged_at = int(run.error.split("epoch ")[1].split(":")[0])
    assert diverged_at > 1 and [row["epoch"] for row in epochs] == list(range(1, diverged_at))
    assert run.stop_reason == f"diverged at epoch {diverged_at}"


def test_a_spec_that_does_not_fit_its_data_fails_readably(Session, context):
    run_id = create(Session, spec_of(XOR, loss="mse"))
    assert train_run(run_id, ctx=context()) == "failed"
    run, _, _ = read(Session, run_id)
    assert run.status == "failed" and "loss" in run.error and "regression" in run.error


def test_an_uploaded_dataset_is_trained(Session, context):
    content = b"x1,x2,label\n" + b"".join(
        f"{a},{b},{'yes' if a != b else 'no'}\n".encode() for a, b in [(0, 0), (0, 1), (1, 0), (1, 1)] * 3
    )
    with Session() as s, s.begin():
        dataset = repo.create_dataset(
            session=s, name="flags", filename="flags.csv", content=content, target="label",
            task="classification", n_samples=12, n_features=2, classes=["no", "yes"],
        )
    spec = spec_of(XOR, dataset={"upload": dataset.id, "test_fraction": 0.0}, optimizer={"name": "adam", "lr": 0.05})
    run_id = create(Session, spec)
    assert train_run(run_id, ctx=context()) == "succeeded"
    run, epochs, _ = read(Session, run_id)
    assert len(epochs) == 200 and run.final_train_accuracy == 1.0


def test_a_missing_upload_fails_the_run(Session, context):
    run_id = create(Session, spec_of(XOR, dataset={"upload": "0" * 32}))
    assert train_run(run_id, ctx=context()) == "failed"
    run, _, _ = read(Session, run_id)
    assert "no uploaded dataset" in run.error


def test_release_then_resume_is_bit_identical_with_one_row_per_epoch(Session, context):
    spec = spec_of(DIGITS, epochs=12)
    run_id = create(Session, spec)
    requeued: list[str] = []
    polls = itertools.count()  # polled before the claim (0), then after every epoch
    first = context(should_release=lambda: next(polls) >= 5, requeue=requeued.append)
    assert train_run(run_id, ctx=first) == "released"
    run, epochs, _ = read(Session, run_id)
    assert (run.status, run.worker, run.lease_expires_at, requeued) == ("queued", None, None, [run_id])
    assert len(epochs) == 5
    with Session() as s:
        assert repo.get_checkpoint(session=s, run_id=run_id)[0] == 5

    assert train_run(run_id, ctx=context()) == "succeeded"
    run, epochs, weight_epochs = read(Session, run_id)
    assert run.attempts == 1 and [row["epoch"] for row in epochs] == list(range(1, 13))  # a hand-over, no new attempt
    assert weight_epochs == list(range(1, 13))
    assert_same_arrays(final_weights(Session, run_id), reference_weights(spec))
    with Session() as s:
        assert repo.get_checkpoint(session=s, run_id=run_id) is None  # a succeeded run keeps none
    uninterrupted = fit(spec).history
    assert run.best_val_loss == min(record.val_loss for record in uninterrupted)


def test_a_message_received_while_shutting_down_is_passed_on_unclaimed(Session, context):
    run_id = create(Session, XOR)
    requeued: list[str] = []
    assert train_run(run_id, ctx=context(should_release=lambda: True, requeue=requeued.append)) == "requeued"
    run, _, _ = read(Session, run_id)
    assert (run.status, run.attempts, requeued) == ("queued", 0, [run_id])


def test_a_run_taken_over_stops_writing(Session, context):
    run_id = create(Session, spec_of(XOR, epochs=100))
    polls = itertools.count()  # polled before the claim (0), then after every epoch

    def expire_at_epoch_10() -> bool:  # the lease runs out and the reconciler hands the run back
        if next(polls) == 10:
            with Session() as s, s.begin():
                later = repo.utcnow() + dt.timedelta(seconds=60)
                assert repo.reconcile(session=s, queued_for=3600, now=later).requeue == [run_id]
        return False

    assert train_run(run_id, ctx=context(should_release=expire_at_epoch_10)) == "lost"
    run, epochs, _ = read(Session, run_id)
    assert run.status == "queued" and len(epochs) == 9  # epoch 10 was not written
    assert train_run(run_id, ctx=context()) == "succeeded"
    run, epochs, _ = read(Session, run_id)
    assert [row["epoch"] for row in epochs] == list(range(1, 101))


def test_a_second_delivery_to_the_same_process_never_trains_the_run_twice(Session, context):
    """A claim repeated by its own retry gets the run again (``repo.claim_run``); a new message for the run in
    the same process while it trains is a claim of its own, under a name of its own, and finds nothing."""
    run_id = create(Session, spec_of(XOR, epochs=20))
    polls = itertools.count()  # polled before the claim (0), then after every epoch
    second: list[str] = []

    def deliver_again_at_epoch_5() -> bool:
        if next(polls) == 5:
            second.append(train_run(run_id, ctx=ctx))
        return False

    ctx = context(should_release=deliver_again_at_epoch_5)
    assert train_run(run_id, ctx=ctx) == "succeeded"
    assert second == ["not_claimed"]
    run, epochs, _ = read(Session, run_id)
    assert run.attempts == 1 and [row["epoch"] for row in epochs] == list(range(1, 21))


def test_an_epoch_longer_than_the_lease_keeps_the_run(Session, context):
    # First a run under a 30 s lease: the process's lease keeper now sleeps 10 s at a time, and must wake for this one.
    assert train_run(create(Session, spec_of(XOR, epochs=5)), ctx=context(lease_seconds=30.0)) == "succeeded"
    run_id = create(Session, spec_of(XOR, epochs=20))
    polls = itertools.count()
    taken: list[object] = []

    def slow_epoch_10() -> bool:  # an epoch of 1 s under a 0.3 s lease: the heartbeat must hold the run
        if next(polls) == 10:
            time.sleep(1.0)
            with Session() as s, s.begin():
                taken.append(repo.claim_run(session=s, run_id=run_id, worker="intruder", lease_seconds=30))
        return False

    ctx = context(lease_seconds=0.3, flush_seconds=60.0, should_release=slow_epoch_10)
    assert train_run(run_id, ctx=ctx) == "succeeded"
    assert taken == [None]
    run, epochs, _ = read(Session, run_id)
    assert run.attempts == 1 and len(epochs) == 20


def test_the_weights_budget_keeps_a_stride_and_the_first_best_and_last(Session, context):
    spec = spec_of(XOR, epochs=300)
    snapshot = len(weights_npz(fit(spec_of(spec, epochs=1)).network.params))
    budget = 23 * snapshot  # 20 strided snapshots, the first, the best and the last
    run_id = create(Session, spec)
    assert train_run(run_id, ctx=context(weights_budget_bytes=budget, flush_seconds=0.0)) == "succeeded"
    run, epochs, weight_epochs = read(Session, run_id)
    stride = SnapshotPlan.for_run(epochs=300, snapshot_bytes=snapshot, budget_bytes=budget, every=None).stride
    assert stride == 15
    expected = {1, run.best_epoch, 300} | set(range(stride, 301, stride))
    assert set(weight_epochs) == expected and len(weight_epochs) * snapshot <= budget
    with Session() as s:
        best = npz_arrays(repo.get_weights(session=s, run_id=run_id, epoch=run.best_epoch)[1])
    assert set(best) == {"W1", "b1", "W2", "b2"}


def test_snapshot_every_in_the_spec(Session, context):
    run_id = create(Session, spec_of(XOR, epochs=50, snapshot_every=20))
    assert train_run(run_id, ctx=context()) == "succeeded"
    run, _, weight_epochs = read(Session, run_id)
    assert set(weight_epochs) == {1, 20, 40, 50, run.best_epoch}


def test_a_run_given_up_after_too_many_attempts(Session, context):
    run_id = create(Session, XOR)
    with Session() as s, s.begin():
        an_hour_ago = repo.utcnow() - dt.timedelta(hours=1)
        for attempt in range(5):  # five workers that each died with the run
            now = an_hour_ago + dt.timedelta(minutes=attempt)
            assert repo.claim_run(session=s, run_id=run_id, worker=f"dead{attempt}", lease_seconds=1, now=now)
    assert train_run(run_id, ctx=context()) == "failed"
    run, _, _ = read(Session, run_id)
    assert run.attempts == 6 and "gave up after 5 attempts" in run.error
    assert run.stop_reason == "gave up after 5 attempts"


# --------------------------------------------------------------------------- an unreachable database


def test_an_unreachable_database_is_retried_then_reported(caplog):
    """A claim against a server that refuses connections is tried again until ``db_retry_seconds``, then raises."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/nowhere")
    ctx = Context(Session=make_sessionmaker(engine), worker="test:0", lease_seconds=30.0, flush_seconds=0.0,
                  weights_budget_bytes=MB, db_retry_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(OperationalError):
        train_run("no-such-run", ctx=ctx)
    assert 0.5 <= time.monotonic() - started < 5  # it gives up rather than pause past the second
    retries = [r for r in caplog.records if "the database is unreachable, trying again" in r.getMessage()]
    assert len(retries) >= 3
    engine.dispose()


def test_retrying_repeats_only_what_an_outage_caused():
    ctx = Context(Session=None, worker="test:0", lease_seconds=30.0, flush_seconds=0.0, weights_budget_bytes=MB)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        return "written"

    assert retrying(ctx, "flaky", flaky) == "written" and len(calls) == 3

    def refused() -> None:
        calls.append(1)
        raise IntegrityError("INSERT", {}, ValueError("duplicate key"))

    calls.clear()
    with pytest.raises(IntegrityError):
        retrying(ctx, "refused", refused)
    assert len(calls) == 1  # a constraint is not an outage: no second try

    shutting_down = Context(Session=None, worker="test:0", lease_seconds=30.0, flush_seconds=0.0,
                            weights_budget_bytes=MB, should_release=lambda: True)
    calls.clear()
    with pytest.raises(OperationalError):
        retrying(shutting_down, "flaky", flaky)
    assert len(calls) == 1  # a worker shutting down hands the run back instead of waiting


def test_a_busy_sqlite_database_is_waited_out(tmp_path, caplog):
    """Another connection holds SQLite's write lock past the worker's busy timeout: "database is locked" is
    retried like an outage (and said to be busy), and the run is trained once the lock is free."""
    path = tmp_path / "trainyard.db"
    upgrade(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}", sqlite_busy_timeout_ms=50)
    Session = make_sessionmaker(engine)
    run_id = create(Session, spec_of(XOR, epochs=20))
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    freed = threading.Timer(1.0, holder.rollback)
    freed.start()
    try:
        ctx = Context(Session=Session, worker="test:0", lease_seconds=30.0, flush_seconds=0.0, weights_budget_bytes=MB)
        assert train_run(run_id, ctx=ctx) == "succeeded"
    finally:
        freed.join()
        holder.close()
        engine.dispose()
    retries = [r for r in caplog.records if "claim: the database is busy, trying again" in r.getMessage()]
    assert len(retries) >= 3


# --------------------------------------------------------------------------- a COMMIT whose acknowledgement was lost


class LostAcknowledgement:
    """Makes one COMMIT on ``engine`` reach PostgreSQL while its client sees the connection die.

    Once :meth:`arm` is called, the next transaction to commit is committed on its connection, a new
    statement opens another transaction there, and the server ends that connection (``pg_terminate_backend``,
    as a crash or a network cut between the server and the worker would); SQLAlchemy then sends COMMIT on the
    dead connection and raises the error a lost acknowledgement raises.  The write is in the database, and
    the worker does not know it.
    """

    def __init__(self, engine: Engine, admin: Engine):
        self.admin, self.armed, self.fired = admin, False, 0
        event.listen(engine, "commit", self._on_commit)

    def arm(self) -> None:
        self.armed = True

    def _on_commit(self, connection: Any) -> None:
        if not self.armed:
            return
        self.armed = False
        dbapi = connection.connection.dbapi_connection
        pid = dbapi.info.backend_pid
        dbapi.commit()  # the transaction's own COMMIT, acknowledged to this hook alone
        dbapi.execute("SELECT 1")  # a transaction for SQLAlchemy's COMMIT to find open on the dead connection
        with self.admin.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            wait_for(lambda: not admin.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                               {"pid": pid}).scalar(), 10, "the backend to end")
        self.fired += 1


@pytest.fixture
def lossy(postgres_admin: Engine, postgres_database: str) -> Iterator[tuple[sessionmaker[OrmSession],
                                                                          LostAcknowledgement]]:
    """A session factory on a PostgreSQL database of the test's own, and the means to lose one COMMIT's answer."""
    upgrade(postgres_database)
    engine = make_engine(postgres_database)
    yield make_sessionmaker(engine), LostAcknowledgement(engine, postgres_admin)
    engine.dispose()


def test_a_claim_whose_commit_acknowledgement_was_lost_still_trains_the_run(lossy, caplog):
    """The claim committed, the worker saw the connection die and claimed again: it finds the run held under
    its own claim's name, trains it, and the run is on its first attempt."""
    Session, lost = lossy
    run_id = create(Session, spec_of(XOR, epochs=30))
    ctx = Context(Session=Session, worker="test:0", lease_seconds=30.0, flush_seconds=0.0, weights_budget_bytes=MB)
    lost.arm()  # the first commit of train_run is the claim's
    assert train_run(run_id, ctx=ctx) == "succeeded"
    assert lost.fired == 1
    assert any("claim: the database is unreachable, trying again" in r.getMessage() for r in caplog.records)
    run, epochs, _ = read(Session, run_id)
    assert (run.status, run.attempts, run.error) == ("succeeded", 1, None)
    assert [row["epoch"] for row in epochs] == list(range(1, 31))
    assert_same_arrays(final_weights(Session, run_id), reference_weights(spec_of(XOR, epochs=30)))


def test_a_release_whose_commit_acknowledgement_was_lost_still_sends_the_run(lossy):
    """The flush that releases the run committed, and the worker, shutting down, saw the connection die: it
    does not wait for the database, and sends the run to the queue anyway (without that message the queued run
    would wait for the reconciler, ten leases); the next worker resumes it on the same attempt."""
    Session, lost = lossy
    spec = spec_of(DIGITS, epochs=12)
    run_id = create(Session, spec)
    requeued: list[str] = []
    polls = itertools.count()  # polled before the claim (0), then after every epoch

    def release_after_epoch_5() -> bool:
        if (release := next(polls) >= 5) and not lost.fired:
            lost.arm()  # the next commit is the flush that releases the run
        return release

    ctx = Context(Session=Session, worker="test:0", lease_seconds=30.0, flush_seconds=0.0, weights_budget_bytes=MB,
                  should_release=release_after_epoch_5, requeue=requeued.append)
    with pytest.raises(OperationalError):
        train_run(run_id, ctx=ctx)
    assert lost.fired == 1 and requeued == [run_id]
    run, epochs, _ = read(Session, run_id)
    assert (run.status, run.worker, run.attempts, len(epochs)) == ("queued", None, 1, 5)
    again = Context(Session=Session, worker="test:1", lease_seconds=30.0, flush_seconds=0.0, weights_budget_bytes=MB)
    assert train_run(run_id, ctx=again) == "succeeded"
    run, epochs, _ = read(Session, run_id)
    assert (run.attempts, [row["epoch"] for row in epochs]) == (1, list(range(1, 13)))
    assert_same_arrays(final_weights(Session, run_id), reference_weights(spec))


def test_a_final_flush_whose_commit_acknowledgement_was_lost_reports_the_run_finished(lossy):
    """The last flush (the final epochs and ``succeeded``) committed unseen: the retry finds the run finished
    and says so, rather than that the run was lost."""
    Session, lost = lossy
    run_id = create(Session, spec_of(XOR, epochs=30))
    polls = itertools.count()

    def arm_after_the_claim() -> bool:
        if next(polls) == 1:  # after the first epoch; with no flush due before the end, the next commit is the last
            lost.arm()
        return False

    ctx = Context(Session=Session, worker="test:0", lease_seconds=30.0, flush_seconds=3600.0, weights_budget_bytes=MB,
                  should_release=arm_after_the_claim)
    assert train_run(run_id, ctx=ctx) == "succeeded"
    assert lost.fired == 1
    run, epochs, _ = read(Session, run_id)
    assert (run.status, run.attempts, len(epochs)) == ("succeeded", 1, 30)
