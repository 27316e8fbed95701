"""The repository functions only the worker calls (batched weights, release, reconcile), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker, unreachable
from trainyard.service.storage.migrate import upgrade
from trainyard.service.storage.models import Run
from trainyard.worker.reconciler import Reconciler


@pytest.fixture
def Session(url: str) -> sessionmaker[OrmSession]:
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def new_run(Session: sessionmaker[OrmSession]) -> str:
    with Session() as s, s.begin():
        return repo.create_run(session=s, spec={}, name="r", seed=0, tags=[], notes="", epochs_total=10).id


def rows(first: int, last: int) -> list[dict[str, Any]]:
    return [
        {"epoch": e, "train_loss": 1 / e, "val_loss": None if e == 2 else 2 / e, "train_accuracy": 0.5,
         "val_accuracy": math.nan, "lr": 0.1, "seconds": 0.01, "weight_norms": [1.0 * e, None],
         "grad_norms": [0.5]}
        for e in range(first, last + 1)
    ]


def test_weights_many_and_delete(Session):
    run_id = new_run(Session)
    with Session() as s, s.begin():
        assert repo.write_weights_many(session=s, run_id=run_id, snapshots=[(1, b"a"), (2, b"bb")]) == 2
        assert repo.write_weights_many(session=s, run_id=run_id, snapshots=[(2, b"x"), (3, b"ccc")]) == 1
        assert repo.write_weights_many(session=s, run_id=run_id, snapshots=[]) == 0
        assert repo.delete_weights(session=s, run_id=run_id, epochs=[2, 9]) == 1
        assert repo.delete_weights(session=s, run_id=run_id, epochs=[]) == 0
    with Session() as s:
        assert repo.list_weight_epochs(session=s, run_id=run_id) == [1, 3]
        assert repo.get_weights(session=s, run_id=run_id, epoch=3) == (3, b"ccc")


def test_release_run_only_by_its_worker(Session):
    run_id = new_run(Session)
    with Session() as s, s.begin():
        repo.claim_run(session=s, run_id=run_id, worker="a", lease_seconds=30)
        assert not repo.release_run(session=s, run_id=run_id, worker="b")
        assert repo.release_run(session=s, run_id=run_id, worker="a")
    with Session() as s, s.begin():
        run = repo.get_run(session=s, run_id=run_id)
        assert (run.status, run.worker, run.lease_expires_at) == ("queued", None, None)
        assert repo.claim_run(session=s, run_id=run_id, worker="b", lease_seconds=30).attempts == 1  # same attempt


def test_reconcile(Session):
    now = repo.utcnow()
    dead, cancelled, alive, forgotten, fresh = (new_run(Session) for _ in range(5))
    with Session() as s, s.begin():
        for run_id in (dead, cancelled):
            repo.claim_run(session=s, run_id=run_id, worker="gone", lease_seconds=5, now=now - dt.timedelta(seconds=60))
        repo.claim_run(session=s, run_id=alive, worker="here", lease_seconds=30, now=now)
        repo.request_cancel(session=s, run_id=cancelled)
        repo.update_run(session=s, run_id=fresh, notes="touched")
    with Session() as s, s.begin():  # an hour on, the queued runs have waited too long, bar the one touched now
        s.get(Run, fresh).updated_at = now + dt.timedelta(hours=1)
    later = now + dt.timedelta(hours=1, seconds=1)
    with Session() as s, s.begin():
        done = repo.reconcile(session=s, queued_for=600, now=later)
    assert done.cancelled == [cancelled]
    assert sorted(done.requeue) == sorted([dead, forgotten, alive])  # alive's 30 s lease ran out too
    with Session() as s, s.begin():
        assert repo.get_run(session=s, run_id=dead).status == "queued"
        assert repo.get_run(session=s, run_id=cancelled).status == "cancelled"
        assert repo.reconcile(session=s, queued_for=600, now=later).requeue == []  # each is sent once a period


def test_blobs_are_stored_whole_and_uncompressed(Session):
    run_id = new_run(Session)
    blob = bytes(range(256)) * 4096  # 1 MiB, compressible: still stored as it is (migration 0002)
    with Session() as s, s.begin():
        repo.write_weights_many(session=s, run_id=run_id, snapshots=[(1, blob)])
        repo.save_checkpoint(session=s, run_id=run_id, epoch=1, data=blob[::-1])
    with Session() as s:
        assert repo.get_weights(session=s, run_id=run_id, epoch=1) == (1, blob)
        assert repo.get_checkpoint(session=s, run_id=run_id) == (1, blob[::-1])
        if s.get_bind().dialect.name == "postgresql":
            for table in ("weights", "checkpoints"):
                method = s.connection().exec_driver_sql(f"SELECT pg_column_compression(data) FROM {table}").scalar()
                assert method is None, table  # not compressed


# --------------------------------------------------------------------------- a connection lost mid-transaction

#: Writes and reads that use the DBAPI cursor (binary parameters or results), each ``(session, run_id) -> Any``.
#: (``write_epochs`` meets the lost connection at its ``UPDATE`` of the run, which comes before its insert.)
ON_THE_DBAPI_CURSOR = [
    pytest.param(lambda s, run_id: repo.write_epochs(session=s, run_id=run_id, rows=rows(1, 3)), id="epochs"),
    pytest.param(lambda s, run_id: repo.write_weights_many(session=s, run_id=run_id, snapshots=[(1, b"w")]),
                 id="weights"),
    pytest.param(lambda s, run_id: repo.get_curves(session=s, run_ids=[run_id], fields=["train_loss"]),
                 id="curves"),
]


@pytest.mark.parametrize("statement", ON_THE_DBAPI_CURSOR)
def test_a_connection_lost_on_the_dbapi_cursor_is_an_error_the_worker_retries(postgres_admin, postgres_database,
                                                                               statement):
    """The server ends the connection just before the statement: an SQLAlchemy error that says "unreachable"
    (:func:`trainyard.worker.training.retrying` retries those), and the connection is not handed out again.

    psycopg raises its own error on the DBAPI cursor; the transaction's rollback on the lost connection then
    raises SQLAlchemy's, which is what leaves the ``with`` block.
    """
    upgrade(postgres_database)
    engine = make_engine(postgres_database)
    Session = make_sessionmaker(engine)
    try:
        run_id = new_run(Session)
        with pytest.raises(SQLAlchemyError) as caught:
            with Session() as s, s.begin():
                pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
                with postgres_admin.connect() as admin:
                    admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                statement(s, run_id)
        assert unreachable(caught.value), repr(caught.value)
        with Session() as s:  # the next session works
            assert repo.get_run(session=s, run_id=run_id).id == run_id
    finally:
        engine.dispose()


def test_reconciler_fails_a_silent_tracked_run_and_never_sends_it(Session):
    """A tracked run still running and silent past ``tracked_for`` is failed, never queued nor sent; one that wrote
    lately, and a finished one, are left alone; lease logic never touches tracked runs (they have none)."""
    now = repo.utcnow()
    long_ago = now - dt.timedelta(seconds=700)
    with Session() as s, s.begin():
        silent = repo.create_tracked_run(session=s, name="silent", params={}, tags=[], notes="", now=long_ago).id
        talking = repo.create_tracked_run(session=s, name="talking", params={}, tags=[], notes="", now=long_ago).id
        done = repo.create_tracked_run(session=s, name="done", params={}, tags=[], notes="", now=long_ago).id
        repo.finish_run(session=s, run_id=done, status="succeeded", now=long_ago)
    with Session() as s, s.begin():
        repo.write_tracked_epochs(session=s, run_id=talking, rows=[{"epoch": 1, "train_loss": 1.0}],
                                  now=now - dt.timedelta(seconds=10))
    with Session() as s, s.begin():  # without a timeout nothing happens to them, and nothing is sent
        assert repo.reconcile(session=s, queued_for=0, now=now) == repo.Reconciled(requeue=[], cancelled=[], lost=[])
    sent: list[str] = []
    reconciler = Reconciler(Session, sent.append, interval=1, queued_for=0, tracked_for=600)
    result = reconciler.reconcile_once()
    assert (result.lost, result.requeue, sent) == ([silent], [], [])
    with Session() as s:
        run = s.get(Run, silent)
        assert (run.status, run.error, run.finished_at is not None) == ("failed", repo.LOST_CONTACT, True)
        assert run.stop_reason == "failed: lost contact with the client for 600 seconds"
        assert (s.get(Run, talking).status, s.get(Run, done).status) == ("running", "succeeded")
    with Session() as s, s.begin():  # still silent much later: it stays failed, and is never sent
        later = now + dt.timedelta(days=1)
        assert repo.reconcile(session=s, queued_for=0, tracked_for=600, now=later).lost == [talking]
    assert sent == []


def test_a_worker_never_claims_a_tracked_run(Session):
    with Session() as s, s.begin():
        run_id = repo.create_tracked_run(session=s, name="by hand", params={}, tags=[], notes="").id
    with Session() as s, s.begin():
        assert repo.claim_run(session=s, run_id=run_id, worker="w", lease_seconds=30,
                              now=repo.utcnow() + dt.timedelta(days=1)) is None
        assert (s.get(Run, run_id).status, s.get(Run, run_id).worker) == ("running", None)
