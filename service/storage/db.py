"""Engines and sessions, made when the caller asks (never at import time).

SQLite (local mode) gets, on every new connection, ``PRAGMA foreign_keys=ON``
(so ``ON DELETE CASCADE`` works), ``journal_mode=WAL`` (readers and one writer
at once) with ``synchronous=NORMAL`` (no sync at every commit), and a
``busy_timeout``; every transaction starts with ``BEGIN IMMEDIATE``, so a
transaction that reads and then writes waits for the write lock instead of
failing with "database is locked" when another process wrote in between (the
sqlite3 module's own transaction handling is switched off, as SQLAlchemy's
SQLite documentation describes).  Keep transactions short: on SQLite one open
transaction holds up every other.

PostgreSQL gets ``pool_pre_ping`` so a restarted server costs no failed
request, and a connect timeout so an unreachable one fails in seconds; a plain
``postgresql://`` URL means the psycopg 3 driver.  :func:`unreachable` tells an
outage from an error in what was asked: callers retry the one, not the other.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from trainyard.service.storage.files import prepare_sqlite_file

#: How long a SQLite connection waits for another's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Seconds a new PostgreSQL connection may take (unless the URL sets ``connect_timeout``).
POSTGRES_CONNECT_TIMEOUT = 10

_POSTGRES_DRIVERNAMES = {"postgresql", "postgres"}


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; a driverless PostgreSQL URL gets the psycopg 3 driver that Trainyard installs."""
    url = make_url(url)
    if url.drivername in _POSTGRES_DRIVERNAMES:
        url = url.set(drivername="postgresql+psycopg")
    return url


def make_engine(url: str | URL, *, sqlite_foreign_keys: bool = True, **kwargs: Any) -> Engine:
    """Make an engine for ``url`` with the settings above.

    Parameters
    ----------
    url : str or URL
        A SQLAlchemy database URL.
    sqlite_foreign_keys : bool, default True
        Whether SQLite enforces foreign keys.  Migrations turn it off: Alembic's
        batch mode recreates a table by dropping it, which with foreign keys on
        would cascade the drop's implicit ``DELETE`` to every referencing row.
    **kwargs
        Passed on to :func:`sqlalchemy.create_engine`.

    For a SQLite file database, the file and its folder are made if they are
    missing, readable by their owner alone (:mod:`.files`).
    """
    url = normalize_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, foreign_keys=sqlite_foreign_keys, **kwargs)
    if backend == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        if "connect_timeout" not in url.query:
            kwargs["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT, **kwargs.get("connect_args", {})}
    return create_engine(url, **kwargs)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached or dropped the connection.

    Such an error is worth retrying; any other (a constraint, a bad query) is not.
    SQLite's "database is locked" is an ``OperationalError`` too, and retrying it is right.
    """
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``; objects stay readable after commit (``expire_on_commit=False``)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def _sqlite_engine(url: URL, *, foreign_keys: bool, **kwargs: Any) -> Engine:
    prepare_sqlite_file(url)  # a missing folder made 0700, a missing file 0600 (and SQLite's -wal, -shm with it)
    engine = create_engine(url, **kwargs)
    pragmas = (
        f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}",
        f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        "PRAGMA journal_mode=WAL",
        # In WAL mode NORMAL syncs at checkpoints, not at every commit, and cannot corrupt the database; a power
        # cut (never a crashed process) may undo the last commits, and with them the process that made them, so
        # a run resumes from the checkpoint committed with its last surviving epochs.
        "PRAGMA synchronous=NORMAL",
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None  # the sqlite3 module emits no BEGIN of its own
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
