"""Engines and sessions, made when the caller asks (never at import time).

SQLite (local mode) gets, on every new connection, ``PRAGMA foreign_keys=ON``
(so ``ON DELETE CASCADE`` works), ``journal_mode=WAL`` (readers and one writer
at once) with ``synchronous=NORMAL`` (no sync at every commit), and a
``busy_timeout``.  The sqlite3 module's own transaction handling is switched
off (as SQLAlchemy's SQLite documentation describes) and each transaction
begins in one of two ways:

- A transaction that may write starts with ``BEGIN IMMEDIATE``: it takes the
  database's one write lock at once, waiting up to the busy timeout for it.
  Begun deferred, a transaction that read and then wrote would fail with
  "database is locked" (``SQLITE_BUSY_SNAPSHOT``, at once, no waiting helps)
  whenever another connection had written since its read.  This is the
  default: every session of :func:`make_sessionmaker`.
- A read (a connection or engine with the :data:`READ_ONLY` execution option:
  ``make_sessionmaker(engine, read_only=True)``, the API's
  ``transaction(read_only=True)``) starts with a deferred ``BEGIN`` under
  ``PRAGMA query_only``: WAL lets it read its snapshot beside the writer, so a
  long read holds up no write, and a write attempted in it fails at once
  (``attempt to write a readonly database``) instead of now and then.
- A write that had better be skipped than wait (bookkeeping: a token's last
  use), with the :data:`NO_WAIT` option, fails at once as :func:`busy` when
  another connection holds the write lock.

Keep write transactions short: on SQLite one holds up every other writer.

PostgreSQL gets ``pool_pre_ping`` so a restarted server costs no failed
request, and a connect timeout so an unreachable one fails in seconds; a plain
``postgresql://`` URL means the psycopg 3 driver; :data:`READ_ONLY` changes
nothing there.  :func:`unreachable` tells an outage from an error in what was
asked, and :func:`busy` a SQLite database whose write lock stayed taken past
the busy timeout: callers retry those, not the others.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from trainyard.service.storage.files import prepare_sqlite_file

#: How long a SQLite connection waits for another's write lock before giving up (unless the engine is told otherwise).
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: The execution option (on an engine or a connection) that makes its transactions reads; see the module's note.
READ_ONLY = "trainyard_read_only"

#: The execution option that makes its transactions fail at once, not wait, while another holds SQLite's write lock.
NO_WAIT = "trainyard_no_wait"

#: Seconds a new PostgreSQL connection may take (unless the URL sets ``connect_timeout``).
POSTGRES_CONNECT_TIMEOUT = 10

_POSTGRES_DRIVERNAMES = {"postgresql", "postgres"}


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; a driverless PostgreSQL URL gets the psycopg 3 driver that Trainyard installs."""
    url = make_url(url)
    if url.drivername in _POSTGRES_DRIVERNAMES:
        url = url.set(drivername="postgresql+psycopg")
    return url


def make_engine(
    url: str | URL,
    *,
    sqlite_foreign_keys: bool = True,
    sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    **kwargs: Any,
) -> Engine:
    """Make an engine for ``url`` with the settings above.

    Parameters
    ----------
    url : str or URL
        A SQLAlchemy database URL.
    sqlite_foreign_keys : bool, default True
        Whether SQLite enforces foreign keys.  Migrations turn it off: Alembic's
        batch mode recreates a table by dropping it, which with foreign keys on
        would cascade the drop's implicit ``DELETE`` to every referencing row.
    sqlite_busy_timeout_ms : int, default :data:`SQLITE_BUSY_TIMEOUT_MS`
        How long a SQLite transaction that writes waits for the write lock;
        then it fails with "database is locked" (:func:`busy`).
    **kwargs
        Passed on to :func:`sqlalchemy.create_engine`.

    For a SQLite file database, the file and its folder are made if they are
    missing, readable by their owner alone (:mod:`.files`).
    """
    url = normalize_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, foreign_keys=sqlite_foreign_keys, busy_timeout_ms=sqlite_busy_timeout_ms, **kwargs)
    if backend == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        if "connect_timeout" not in url.query:
            kwargs["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT, **kwargs.get("connect_args", {})}
    return create_engine(url, **kwargs)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached or dropped the connection.

    Such an error is worth retrying; any other (a constraint, a bad query) is not.  SQLite's "database is
    locked" is :func:`busy` instead, and its "attempt to write a readonly database" (a write in a read
    transaction) a bug that no retry mends: neither is unreachable.
    """
    if busy(exc) or _sqlite_error(exc) == sqlite3.SQLITE_READONLY:
        return False
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked": another connection held the write lock past the busy
    timeout (or, in a read that went on to write, wrote first).  Worth retrying: the lock is soon free."""
    return _sqlite_error(exc) == sqlite3.SQLITE_BUSY


def _sqlite_error(exc: BaseException) -> int | None:
    """The primary SQLite result code of ``exc`` (a DBAPI error wrapped by SQLAlchemy), None if it has none."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    code = getattr(orig, "sqlite_errorcode", None) if isinstance(orig, sqlite3.Error) else None
    return None if code is None else code & 0xFF  # an extended code (SQLITE_BUSY_SNAPSHOT) holds it in its low byte


def make_sessionmaker(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """A session factory bound to ``engine``; objects stay readable after commit (``expire_on_commit=False``).

    ``read_only`` sessions only read: on SQLite they take no lock (see the module's note).
    """
    return sessionmaker(bind=engine.execution_options(**{READ_ONLY: True}) if read_only else engine,
                        expire_on_commit=False)


def _sqlite_engine(url: URL, *, foreign_keys: bool, busy_timeout_ms: int, **kwargs: Any) -> Engine:
    prepare_sqlite_file(url)  # a missing folder made 0700, a missing file 0600 (and SQLite's -wal, -shm with it)
    engine = create_engine(url, **kwargs)
    pragmas = (
        f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}",
        f"PRAGMA busy_timeout={int(busy_timeout_ms)}",
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
        read_only = bool(connection.get_execution_options().get(READ_ONLY, False))
        state = connection.connection.info  # kept with the DBAPI connection, across checkouts
        if state.get(READ_ONLY, False) != read_only:
            connection.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
            state[READ_ONLY] = read_only
        if read_only:
            connection.exec_driver_sql("BEGIN")
        elif connection.get_execution_options().get(NO_WAIT, False):
            connection.exec_driver_sql("PRAGMA busy_timeout=0")
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # WAL: the lock taken, the COMMIT never waits
            finally:
                connection.exec_driver_sql(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
