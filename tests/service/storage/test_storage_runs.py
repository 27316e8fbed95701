"""Runs: create, read, update, delete, cancel, claim, lease, finish, and what the reconciler finds."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from trainyard.service.storage import repo
from trainyard.service.storage.models import Checkpoint, Epoch, Run, Weights

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def _seconds(n: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=n)


def _claim(Session, run_id, worker="w1", lease_seconds=60.0, now=T0):
    with Session() as s, s.begin():
        return repo.claim_run(session=s, run_id=run_id, worker=worker, lease_seconds=lease_seconds, now=now)


def _get(Session, run_id) -> Run | None:
    with Session() as s:
        return repo.get_run(session=s, run_id=run_id)


# --------------------------------------------------------------------------- create, get, update, delete


def test_create_and_get(Session, make_run):
    before = repo.utcnow()
    run = make_run(name="xor tanh", seed=7, tags=["a", "b", "a"], notes="first", epochs_total=2000)
    got = _get(Session, run.id)
    assert len(got.id) == 32 and int(got.id, 16) >= 0
    assert (got.name, got.seed, got.tags, got.notes) == ("xor tanh", 7, ["a", "b"], "first")
    assert (got.status, got.attempts, got.epochs_done, got.epochs_total) == ("queued", 0, 0, 2000)
    assert got.spec["model"]["hidden"] == [{"units": 8, "activation": "tanh"}]
    assert got.cancel_requested is False
    assert got.worker is None and got.started_at is None and got.finished_at is None and got.error is None
    assert got.created_at.tzinfo == dt.timezone.utc and before <= got.created_at <= repo.utcnow()
    assert got.summary == dict.fromkeys(got.summary)  # all null until the run finishes
    assert _get(Session, "0" * 32) is None


def test_create_refuses_bad_values(Session, make_run):
    for bad in (dict(name=""), dict(name="   "), dict(name="x" * 201), dict(tags="abc"), dict(tags=["a", 1])):
        with pytest.raises(ValueError):
            make_run(**bad)
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(Run)) == 0


def test_create_with_unknown_sweep_fails(make_run):
    with pytest.raises(IntegrityError):
        make_run(sweep_id="f" * 32)


def test_update(Session, make_run):
    run = make_run(name="before", tags=["x"], notes="n")
    with Session() as s, s.begin():
        updated = repo.update_run(session=s, run_id=run.id, name="after", tags=["y", "z"])
        assert (updated.name, updated.tags, updated.notes) == ("after", ["y", "z"], "n")
    got = _get(Session, run.id)
    assert (got.name, got.tags, got.notes) == ("after", ["y", "z"], "n")
    assert got.updated_at >= run.updated_at
    with Session() as s, s.begin():
        repo.update_run(session=s, run_id=run.id, notes="", tags=[])
    got = _get(Session, run.id)
    assert (got.name, got.tags, got.notes) == ("after", [], "")
    with Session() as s, s.begin():
        assert repo.update_run(session=s, run_id="0" * 32, name="x") is None
        with pytest.raises(ValueError):
            repo.update_run(session=s, run_id=run.id, name="")


def _count(Session, model, run_id) -> int:
    with Session() as s:
        return s.scalar(select(func.count()).select_from(model).where(model.run_id == run_id))


def test_delete_cascades_to_epochs_weights_and_checkpoint(Session, make_run):
    run, other = make_run(), make_run()
    for run_id in (run.id, other.id):
        with Session() as s, s.begin():
            repo.write_epochs(session=s, run_id=run_id, rows=[{"epoch": 1, "train_loss": 1.0}, {"epoch": 2}])
            repo.write_weights_many(session=s, run_id=run_id, snapshots=[(2, b"npz")])
            repo.save_checkpoint(session=s, run_id=run_id, epoch=2, data=b"state")
    with Session() as s, s.begin():
        assert repo.delete_run(session=s, run_id=run.id) is True
    assert _get(Session, run.id) is None
    assert [_count(Session, model, run.id) for model in (Epoch, Weights, Checkpoint)] == [0, 0, 0]
    assert [_count(Session, model, other.id) for model in (Epoch, Weights, Checkpoint)] == [2, 1, 1]
    with Session() as s, s.begin():
        assert repo.delete_run(session=s, run_id=run.id) is False


def test_deleting_a_sweep_keeps_its_runs(Session, make_run):
    with Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name="lr", method="grid", base_spec={}, space={"lr": [0.1]})
    run = make_run(sweep_id=sweep.id)
    with Session() as s, s.begin():
        s.delete(repo.get_sweep(session=s, sweep_id=sweep.id))
    assert _get(Session, run.id).sweep_id is None


# --------------------------------------------------------------------------- cancel


def test_cancel_a_queued_run_cancels_it_at_once(Session, make_run):
    run = make_run()
    with Session() as s, s.begin():
        cancelled = repo.request_cancel(session=s, run_id=run.id, now=T0)
    assert (cancelled.status, cancelled.finished_at, cancelled.cancel_requested) == ("cancelled", T0, True)
    assert _claim(Session, run.id, now=_seconds(1)) is None  # a late message finds nothing to claim


def test_cancel_a_running_run_sets_the_flag(Session, make_run):
    run = make_run()
    _claim(Session, run.id)
    with Session() as s, s.begin():
        flagged = repo.request_cancel(session=s, run_id=run.id, now=_seconds(1))
    assert (flagged.status, flagged.cancel_requested, flagged.finished_at) == ("running", True, None)
    with Session() as s, s.begin():
        lease = repo.renew_lease(session=s, run_id=run.id, worker="w1", lease_seconds=60, now=_seconds(2))
    assert lease == repo.Lease(held=True, cancel_requested=True)
    # nobody may take over a run whose cancel was asked for, even once its lease has run out
    assert _claim(Session, run.id, worker="w2", now=_seconds(3600)) is None
    with Session() as s, s.begin():
        done = repo.finish_run(session=s, run_id=run.id, status="cancelled", worker="w1", now=_seconds(3))
    assert (done.status, done.finished_at) == ("cancelled", _seconds(3))


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_cancel_a_finished_run_changes_nothing(Session, make_run, status):
    run = make_run()
    _claim(Session, run.id)
    with Session() as s, s.begin():
        repo.finish_run(session=s, run_id=run.id, status=status, now=_seconds(5))
    before = _get(Session, run.id)
    with Session() as s, s.begin():
        after = repo.request_cancel(session=s, run_id=run.id, now=_seconds(9))
    assert (after.status, after.cancel_requested, after.finished_at, after.updated_at) == (
        before.status,
        False,
        _seconds(5),
        before.updated_at,
    )


def test_cancel_an_unknown_run(Session):
    with Session() as s, s.begin():
        assert repo.request_cancel(session=s, run_id="0" * 32) is None


# --------------------------------------------------------------------------- claim, lease, finish


def test_claim_a_queued_run(Session, make_run):
    run = make_run()
    claimed = _claim(Session, run.id, worker="host:1:abc", lease_seconds=30, now=T0)
    assert (claimed.status, claimed.worker, claimed.attempts) == ("running", "host:1:abc", 1)
    assert (claimed.started_at, claimed.lease_expires_at, claimed.updated_at) == (T0, _seconds(30), T0)
    assert _get(Session, run.id).lease_expires_at == _seconds(30)


def test_a_claimed_run_cannot_be_claimed_again_while_its_lease_holds(Session, make_run):
    run = make_run()
    assert _claim(Session, run.id, worker="host:1:abc:c1", now=T0) is not None
    assert _claim(Session, run.id, worker="w2", now=_seconds(59)) is None
    # A second delivery to the same process is a claim of its own, under a name of its own.
    assert _claim(Session, run.id, worker="host:1:abc:c2", now=_seconds(59)) is None
    assert _get(Session, run.id).attempts == 1


def test_a_claim_repeated_by_its_holder_gets_the_run_as_the_first_did(Session, make_run):
    """A worker whose claim's COMMIT went through but whose acknowledgement was lost claims again: the run is
    its own, with the attempt the first call returned and a renewed lease; a cancel asked in between stays
    asked, for the worker's first flush to honour."""
    run = make_run()
    first = _claim(Session, run.id, worker="w1", lease_seconds=60, now=T0)
    with Session() as s, s.begin():
        repo.request_cancel(session=s, run_id=run.id, now=_seconds(1))
    again = _claim(Session, run.id, worker="w1", lease_seconds=60, now=_seconds(2))
    assert (again.status, again.worker, again.attempts, again.started_at) == ("running", "w1", first.attempts, T0)
    assert again.attempts == 1 and again.lease_expires_at == _seconds(62) and again.cancel_requested
    assert _claim(Session, run.id, worker="w2", now=_seconds(3)) is None


def test_a_repeated_claim_never_takes_a_run_another_worker_took_over(Session, make_run):
    run = make_run()
    _claim(Session, run.id, worker="w1", lease_seconds=10, now=T0)
    assert _claim(Session, run.id, worker="w2", lease_seconds=10, now=_seconds(11)).attempts == 2
    assert _claim(Session, run.id, worker="w1", now=_seconds(12)) is None  # w1's lease expired and w2 took over
    assert (_get(Session, run.id).worker, _get(Session, run.id).attempts) == ("w2", 2)


def test_its_own_claim_of_an_expired_lease_is_the_same_attempt(Session, make_run):
    run = make_run()
    _claim(Session, run.id, worker="w1", lease_seconds=10, now=T0)
    again = _claim(Session, run.id, worker="w1", lease_seconds=10, now=_seconds(30))  # retried for 30 s
    assert (again.worker, again.attempts, again.lease_expires_at) == ("w1", 1, _seconds(40))


def test_attempts_count_lost_workers_not_graceful_hand_overs(Session, make_run):
    """``attempts`` is the attempt the run is on: a release (a worker stopped with SIGTERM) hands the attempt
    on, any number of times; a lease that expired starts a new one, whether another worker takes the run
    over directly or the reconciler puts it back in the queue first."""
    run = make_run()
    assert _get(Session, run.id).attempts == 0
    for n in range(8):  # eight rolling restarts
        assert _claim(Session, run.id, worker=f"graceful{n}", now=_seconds(n)).attempts == 1
        with Session() as s, s.begin():
            assert repo.release_run(session=s, run_id=run.id, worker=f"graceful{n}", now=_seconds(n))
        assert (_get(Session, run.id).status, _get(Session, run.id).attempts) == ("queued", 1)
    _claim(Session, run.id, worker="killed", lease_seconds=10, now=_seconds(100))
    assert _claim(Session, run.id, worker="taker", lease_seconds=10, now=_seconds(111)).attempts == 2
    with Session() as s, s.begin():
        assert repo.reconcile(session=s, queued_for=3600, now=_seconds(200)).requeue == [run.id]
    assert (_get(Session, run.id).status, _get(Session, run.id).attempts) == ("queued", 3)
    assert _claim(Session, run.id, worker="after", now=_seconds(201)).attempts == 3


def test_an_expired_lease_can_be_reclaimed(Session, make_run):
    run = make_run()
    _claim(Session, run.id, worker="w1", now=T0)
    again = _claim(Session, run.id, worker="w2", lease_seconds=60, now=_seconds(61))
    assert (again.worker, again.attempts, again.started_at, again.lease_expires_at) == ("w2", 2, T0, _seconds(121))
    with Session() as s, s.begin():  # the first worker lost it
        lost = repo.renew_lease(session=s, run_id=run.id, worker="w1", lease_seconds=60, now=_seconds(62))
        assert lost == repo.Lease(held=False, cancel_requested=False)
        assert repo.finish_run(session=s, run_id=run.id, status="succeeded", worker="w1") is None


def test_claim_refuses_finished_and_unknown_runs(Session, make_run):
    run = make_run()
    _claim(Session, run.id)
    with Session() as s, s.begin():
        repo.finish_run(session=s, run_id=run.id, status="failed", error="boom", worker="w1", now=_seconds(1))
    assert _claim(Session, run.id, worker="w2", now=_seconds(3600)) is None
    assert _claim(Session, "0" * 32) is None


def test_claim_checks_its_arguments(Session, make_run):
    run = make_run()
    with pytest.raises(ValueError, match="lease_seconds"):
        _claim(Session, run.id, lease_seconds=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        _claim(Session, run.id, now=dt.datetime(2030, 1, 1))
    assert _get(Session, run.id).status == "queued"


def test_concurrent_claims_never_both_succeed(Session, make_run, dialect):
    """Two threads, each with its own session and connection, claim the same queued run at the same moment.

    On PostgreSQL both transactions are open before either claims.  On SQLite
    a transaction takes the write lock as it begins (``BEGIN IMMEDIATE``), so
    the threads meet at the barrier first and then race to begin.
    """

    def claim(run_id: str, worker: str, barrier: threading.Barrier) -> bool:
        with Session() as s, s.begin():
            if dialect == "postgresql":
                s.connection()
            barrier.wait(timeout=10)
            return repo.claim_run(session=s, run_id=run_id, worker=worker, lease_seconds=60) is not None

    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(10):
            run = make_run()
            barrier = threading.Barrier(2)
            wins = list(pool.map(claim, [run.id, run.id], ["a", "b"], [barrier, barrier]))
            assert sorted(wins) == [False, True]
            winner = _get(Session, run.id)
            assert winner.attempts == 1 and winner.worker == ("a" if wins[0] else "b")


def test_renew_lease(Session, make_run):
    run = make_run()
    _claim(Session, run.id, worker="w1", lease_seconds=10, now=T0)
    with Session() as s, s.begin():
        assert repo.renew_lease(session=s, run_id=run.id, worker="w1", lease_seconds=10, now=_seconds(5)) == (
            repo.Lease(held=True, cancel_requested=False)
        )
        assert not repo.renew_lease(session=s, run_id=run.id, worker="w2", lease_seconds=10, now=_seconds(5)).held
        # lapsed but not yet taken over: the holder may still renew
        assert repo.renew_lease(session=s, run_id=run.id, worker="w1", lease_seconds=10, now=_seconds(30)).held
        assert not repo.renew_lease(session=s, run_id="0" * 32, worker="w1", lease_seconds=10).held
    assert _get(Session, run.id).lease_expires_at == _seconds(40)
    with Session() as s, s.begin():
        with pytest.raises(ValueError):
            repo.renew_lease(session=s, run_id=run.id, worker="w1", lease_seconds=-1)


def test_finish_a_run(Session, make_run):
    run = make_run()
    _claim(Session, run.id, worker="w1", now=T0)
    summary = {"final_train_loss": 0.25, "final_val_loss": float("nan"), "best_val_accuracy": 0.75, "best_epoch": 9}
    with Session() as s, s.begin():
        assert repo.finish_run(session=s, run_id=run.id, status="succeeded", worker="w2") is None  # not its run
        done = repo.finish_run(
            session=s, run_id=run.id, status="succeeded", worker="w1", summary=summary, now=_seconds(9)
        )
    got = _get(Session, run.id)
    assert (got.status, got.finished_at, got.lease_expires_at, got.error) == ("succeeded", _seconds(9), None, None)
    assert got.summary == {
        "final_train_loss": 0.25,
        "final_val_loss": None,
        "final_train_accuracy": None,
        "final_val_accuracy": None,
        "best_val_loss": None,
        "best_val_accuracy": 0.75,
        "best_epoch": 9,
    }
    assert done.summary == got.summary
    with Session() as s, s.begin():  # finished is final
        assert repo.finish_run(session=s, run_id=run.id, status="failed", error="late") is None
    assert _get(Session, run.id).status == "succeeded"


def test_finish_without_a_worker_takes_any_unfinished_run(Session, make_run):
    queued, running = make_run(), make_run()
    _claim(Session, running.id, worker="w1")
    with Session() as s, s.begin():
        failed = repo.finish_run(session=s, run_id=queued.id, status="failed", error="dataset is gone")
        cancelled = repo.finish_run(session=s, run_id=running.id, status="cancelled")
    assert (failed.status, failed.error) == ("failed", "dataset is gone")
    assert (cancelled.status, cancelled.worker) == ("cancelled", "w1")


def test_finish_checks_its_arguments(Session, make_run):
    run = make_run()
    for arguments in (dict(status="running"), dict(status="done"), dict(status="failed", summary={"accuracy": 1.0})):
        with Session() as s, s.begin():
            with pytest.raises(ValueError):
                repo.finish_run(session=s, run_id=run.id, **arguments)
    assert _get(Session, run.id).status == "queued"


def test_reconcile_takes_back_only_expired_leases_and_forgotten_queued_runs(Session, make_run):
    fresh_queue = make_run(name="fresh queued")
    lost_queue = make_run(name="old queued")
    live, dead, dead_cancelled, done = (make_run(name=n) for n in ("live", "dead", "dead+cancel", "done"))
    _claim(Session, live.id, worker="a", lease_seconds=600, now=T0)
    _claim(Session, dead.id, worker="b", lease_seconds=10, now=T0)
    _claim(Session, dead_cancelled.id, worker="c", lease_seconds=10, now=T0)
    _claim(Session, done.id, worker="d", lease_seconds=10, now=T0)
    with Session() as s, s.begin():
        repo.request_cancel(session=s, run_id=dead_cancelled.id)
        repo.finish_run(session=s, run_id=done.id, status="succeeded")
        for run in (fresh_queue, live, dead, dead_cancelled, done):
            s.get(Run, run.id).updated_at = T0
        s.get(Run, lost_queue.id).updated_at = T0 - dt.timedelta(hours=1)
    with Session() as s, s.begin():
        nothing_due = repo.reconcile(session=s, now=_seconds(5), queued_for=7200)  # no lease ran out, no wait is long
        assert nothing_due == repo.Reconciled(requeue=[], cancelled=[])
        reconciled = repo.reconcile(session=s, now=_seconds(60), queued_for=600)
    assert sorted(reconciled.requeue) == sorted([lost_queue.id, dead.id])
    assert reconciled.cancelled == [dead_cancelled.id]
    after = {run.id: _get(Session, run.id) for run in (fresh_queue, lost_queue, live, dead, dead_cancelled, done)}
    assert {run_id: (run.status, run.worker) for run_id, run in after.items()} == {
        fresh_queue.id: ("queued", None), lost_queue.id: ("queued", None), live.id: ("running", "a"),
        dead.id: ("queued", None), dead_cancelled.id: ("cancelled", "c"), done.id: ("succeeded", "d"),
    }
