"""Engines: SQLite pragmas and folders, the psycopg driver for plain PostgreSQL URLs, session factories."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker, normalize_url
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
