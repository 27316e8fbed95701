"""What a request reaches through the application: settings, database and queue.

``create_app`` installs one :class:`Services` per app in ``app.extensions``;
views reach it through :func:`services` and open their own transaction with
:func:`transaction` (never a global session)::

    with transaction() as s:
        run = repo.get_run(session=s, run_id=run_id)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask, current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.queue import RunQueue

EXTENSION = "trainyard"


@dataclass(frozen=True)
class Services:
    """The app's settings, its engine and session factory, and its run queue."""

    settings: Settings
    engine: Engine
    Session: sessionmaker[Session]
    queue: RunQueue


def install(app: Flask, services: Services) -> None:
    """Attach ``services`` to ``app``."""
    app.extensions[EXTENSION] = services


def services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions[EXTENSION]


@contextmanager
def transaction() -> Iterator[Session]:
    """A session in a transaction, committed when the block ends (rolled back if it raises)."""
    with services().Session() as session, session.begin():
        yield session
