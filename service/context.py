"""What a request reaches through the application: settings, database and queue.

``create_app`` installs one :class:`Services` per app in ``app.extensions``;
views reach it through :func:`services` and open their own transaction with
:func:`transaction` (never a global session)::

    with transaction(read_only=True) as s:
        run = repo.get_run(session=s, run_id=run_id)

A transaction that only reads says so (``read_only=True``): on SQLite it then
takes no lock, so a long read holds up neither the API's writes nor the
workers' (see :mod:`trainyard.service.storage.db`); one that may write takes
the write lock when it begins.

A request checks out one database connection, on its first transaction, and
every later transaction of the request (the token's check, then the view's
work) runs on it; it goes back to the pool when the request ends.  A checkout
costs a round trip (the pool's liveness ping), so this halves them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask, current_app, g, has_request_context
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from trainyard.service.config import Settings
from trainyard.service.queue import RunQueue
from trainyard.service.storage.db import NO_WAIT, READ_ONLY

EXTENSION = "trainyard"


@dataclass(frozen=True)
class Services:
    """The app's settings, its engine and session factory, and its run queue."""

    settings: Settings
    engine: Engine
    Session: sessionmaker[Session]
    queue: RunQueue


def install(app: Flask, services: Services) -> None:
    """Attach ``services`` to ``app``, and return each request's connection to the pool when it ends."""
    app.extensions[EXTENSION] = services
    app.teardown_request(_release_connection)


def services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions[EXTENSION]


@contextmanager
def transaction(*, read_only: bool = False, wait: bool = True) -> Iterator[Session]:
    """A session in a transaction, committed when the block ends (rolled back if it raises).

    ``read_only``: the block only reads (a write in it fails at once on SQLite); otherwise it may write, and
    on SQLite it holds the database's one write lock from its start, so keep it short.  ``wait=False``: on
    SQLite, fail at once (``storage.db.busy``) rather than wait while another holds the write lock.  In a
    request it runs on the request's connection (see the module's note).
    """
    current = services()
    options = {READ_ONLY: read_only, NO_WAIT: not wait}
    if has_request_context():
        bind = _request_connection().execution_options(**options)  # in place: the request's next one sets its own
    else:
        bind = current.engine.execution_options(**options)
    with current.Session(bind=bind) as session, session.begin():
        yield session


def _request_connection() -> Connection:
    connection = g.get("_database_connection")
    if connection is None or connection.closed or connection.invalidated:
        connection = g._database_connection = services().engine.connect()
    return connection


def _release_connection(exc: BaseException | None) -> None:
    connection = g.pop("_database_connection", None)
    if connection is not None:
        connection.close()
