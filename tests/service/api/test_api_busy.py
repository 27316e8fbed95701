"""Local mode's SQLite under a held write lock: reads answer at once beside it, a write that cannot have the lock
within the API's busy timeout answers ``503 busy`` (with ``Retry-After``) and writes nothing.

PostgreSQL has no database-wide write lock to hold, so this module runs on SQLite alone.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from trainyard.service.app import SQLITE_BUSY_TIMEOUT_MS
from trainyard.service.config import Settings
from trainyard.service.storage import repo
from trainyard.service.storage.db import make_sessionmaker


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def write_lock(settings: Settings) -> Iterator[sqlite3.Connection]:
    """Another connection holding the app database's write lock (as a long write would) until the test ends."""
    holder = sqlite3.connect(make_url(settings.database_url).database, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    yield holder
    holder.close()


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_reads_answer_at_once_beside_a_held_write_lock(app, api, reader, write_lock):
    """A read-only token's requests never wait for the write lock, not even to record the token's use (skipped
    while the lock is taken, written by the first request after)."""
    Session = make_sessionmaker(app.extensions["trainyard"].engine, read_only=True)
    write_lock.rollback()
    run = api.create_run()
    write_lock.execute("BEGIN IMMEDIATE")
    for path in ("/api/runs?limit=1", f"/api/runs/{run['id']}", f"/api/runs/{run['id']}/epochs",
                 "/api/datasets", f"/api/compare?runs={run['id']}"):
        response, seconds = timed(lambda path=path: reader.get(path))
        assert (response.status_code, path) == (200, path) and seconds < 1.0, (path, seconds)
    with Session() as s:
        assert [t.last_used_at for t in repo.list_tokens(session=s) if t.name == "read"] == [None]
    write_lock.rollback()
    assert reader.get("/api/runs?limit=1").status_code == 200
    with Session() as s:
        assert [t.last_used_at is not None for t in repo.list_tokens(session=s) if t.name == "read"] == [True]


def test_a_write_that_cannot_have_the_lock_is_503_busy_and_writes_nothing(api, write_lock, assert_error, spec,
                                                                           run_count, Session):
    write_lock.rollback()
    run = api.create_run()
    write_lock.execute("BEGIN IMMEDIATE")
    response, seconds = timed(lambda: api.patch(f"/api/runs/{run['id']}", json={"name": "renamed"}))
    error = assert_error(response, 503, "busy")
    assert "busy" in error["message"] and response.headers["Retry-After"] == "1"
    assert SQLITE_BUSY_TIMEOUT_MS / 1000 - 0.5 <= seconds < SQLITE_BUSY_TIMEOUT_MS / 1000 + 5  # not the engine's 30 s
    assert_error(api.post("/api/runs", json=spec), 503, "busy")
    write_lock.rollback()
    assert run_count() == 1
    with Session() as s:
        assert repo.get_run(session=s, run_id=run["id"]).name == run["name"]
    assert api.patch(f"/api/runs/{run['id']}", json={"name": "renamed"}).get_json()["name"] == "renamed"
