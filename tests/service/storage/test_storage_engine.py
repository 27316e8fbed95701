"""Engines: SQLite pragmas and folders, its read and write transactions, the psycopg driver for plain PostgreSQL
URLs, session factories."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from trainyard.service.storage import repo
from trainyard.service.storage.db import busy, make_engine, make_sessionmaker, normalize_url, unreachable
from trainyard.service.storage.migrate import upgrade


def test_sqlite_pragmas_and_folder(tmp_path):
    path = tmp_path / "deep" / "er" / "trainyard.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert path.parent.is_dir()
    finally:
        engine.dispose()
    quick = make_engine(f"sqlite:///{path}", sqlite_busy_timeout_ms=1500)
    try:
        with quick.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1500
    finally:
        quick.dispose()
    off = make_engine(f"sqlite:///{path}", sqlite_foreign_keys=False)
    try:
        with off.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    finally:
        off.dispose()


def test_sqlite_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = make_engine("sqlite://")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
    assert list(tmp_path.iterdir()) == []


def test_sqlite_transactions_roll_back(tmp_path):
    """The sqlite3 module's own transaction handling is off; SQLAlchemy's BEGIN and ROLLBACK still hold."""
    url = f"sqlite:///{tmp_path / 'trainyard.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        Session = make_sessionmaker(engine)
        with pytest.raises(RuntimeError):
            with Session() as s, s.begin():
                repo.create_token(session=s, scope="read")
                raise RuntimeError
        with Session() as s:
            assert repo.list_tokens(session=s) == []
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced(url, Session):
    # On PostgreSQL the weights go in on the DBAPI cursor, which raises psycopg's own IntegrityError.
    with pytest.raises((IntegrityError, psycopg.IntegrityError)):
        with Session() as s, s.begin():
            repo.write_weights_many(session=s, run_id="0" * 32, snapshots=[(1, b"")])


@pytest.mark.parametrize(
    "given, expected",
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgres://u@h:5433/db", "postgresql+psycopg://u@h:5433/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_normalize_url(given, expected):
    assert normalize_url(given).render_as_string(hide_password=False) == expected


def test_postgres_engine_options(postgres_database):
    engine = make_engine(postgres_database.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert engine.pool._pre_ping is True
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_sessions_keep_objects_readable_after_commit(Session):
    assert Session.kw["expire_on_commit"] is False
    with Session() as s, s.begin():
        _, token = repo.create_token(session=s, scope="read")
    assert token.scope == "read"


def test_make_sessionmaker_binds_the_engine(engine):
    assert make_sessionmaker(engine).kw["bind"] is engine


# --------------------------------------------------------------------------- SQLite: reads beside the writer


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "trainyard.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def write_lock(sqlite_file: Path) -> Iterator[sqlite3.Connection]:
    """Another connection, the test's own, holding the database's write lock (``BEGIN IMMEDIATE``) until released."""
    holder = sqlite3.connect(sqlite_file, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    yield holder
    holder.close()


def test_sqlite_reads_take_no_lock_and_writes_take_it_as_they_begin(sqlite_file, write_lock):
    engine = make_engine(f"sqlite:///{sqlite_file}", sqlite_busy_timeout_ms=300)
    try:
        Read, Write = make_sessionmaker(engine, read_only=True), make_sessionmaker(engine)
        started = time.monotonic()
        with Read() as s, s.begin():
            assert repo.list_tokens(session=s) == []  # read beside the lock's holder, at once
        assert time.monotonic() - started < 0.25
        with pytest.raises(OperationalError) as caught:
            with Write() as s, s.begin():
                repo.list_tokens(session=s)  # a transaction that may write waits for the lock from its start
        assert busy(caught.value) and not unreachable(caught.value)
        assert "database is locked" in str(caught.value) and time.monotonic() - started >= 0.3
    finally:
        engine.dispose()


def test_sqlite_a_long_read_holds_up_no_writer(sqlite_file):
    engine = make_engine(f"sqlite:///{sqlite_file}")
    try:
        Read, Write = make_sessionmaker(engine, read_only=True), make_sessionmaker(engine)
        with Read() as reading, reading.begin():
            assert repo.list_tokens(session=reading) == []  # the read's snapshot is taken
            started = time.monotonic()
            with Write() as s, s.begin():
                repo.create_token(session=s, scope="read")
            assert time.monotonic() - started < 1.0  # it did not wait for the read (30 s busy timeout)
            assert repo.list_tokens(session=reading) == []  # and the read keeps its snapshot
        with Read() as s:
            assert len(repo.list_tokens(session=s)) == 1
    finally:
        engine.dispose()


def test_sqlite_a_write_in_a_read_transaction_fails_at_once(sqlite_file):
    """Not only when another connection wrote first (``SQLITE_BUSY_SNAPSHOT``), which tests would rarely meet:
    a read transaction cannot write at all, and the error is neither an outage nor a busy database."""
    engine = make_engine(f"sqlite:///{sqlite_file}")
    try:
        Read, Write = make_sessionmaker(engine, read_only=True), make_sessionmaker(engine)
        with pytest.raises(OperationalError) as caught:
            with Read() as s, s.begin():
                repo.create_token(session=s, scope="read")
        assert "readonly" in str(caught.value) and not unreachable(caught.value) and not busy(caught.value)
        with Write() as s, s.begin():  # the same pooled connection writes again in a transaction that may
            repo.create_token(session=s, scope="read")
        with Read() as s:
            assert len(repo.list_tokens(session=s)) == 1
    finally:
        engine.dispose()


def test_sqlite_a_transaction_that_reads_then_writes_waits_for_a_writer_instead_of_failing(sqlite_file):
    """What ``BEGIN IMMEDIATE`` is for: begun deferred, the first transaction below would fail with "database
    is locked" (``SQLITE_BUSY_SNAPSHOT``) at its write, since the second wrote after its read."""
    engine = make_engine(f"sqlite:///{sqlite_file}")
    try:
        Write = make_sessionmaker(engine)
        has_read, done = threading.Event(), []

        def other_writer() -> None:
            has_read.wait(10)
            with Write() as s, s.begin():
                repo.create_token(session=s, scope="write", name="second")
            done.append(time.monotonic())

        thread = threading.Thread(target=other_writer)
        thread.start()
        with Write() as s, s.begin():
            assert repo.list_tokens(session=s) == []
            has_read.set()
            time.sleep(0.3)  # the other writer tries meanwhile
            repo.create_token(session=s, scope="read", name="first")
            first_committed = time.monotonic()
        thread.join(10)
        assert done and done[0] >= first_committed  # it waited for the first, then wrote
        with Write() as s:
            assert sorted(token.name for token in repo.list_tokens(session=s)) == ["first", "second"]
    finally:
        engine.dispose()


def test_read_only_sessions_read_on_both_databases(url, engine):
    with make_sessionmaker(engine)() as s, s.begin():
        repo.create_token(session=s, scope="read", name="t")
    with make_sessionmaker(engine, read_only=True)() as s, s.begin():
        assert [token.name for token in repo.list_tokens(session=s)] == ["t"]
