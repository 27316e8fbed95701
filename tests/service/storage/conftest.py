"""Fixtures of the storage tests: ``engine`` and ``Session`` for the test's own database.

The database itself (``database_url``: SQLite or a fresh PostgreSQL database;
``url``: migrated to head) comes from ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from factories import xor
from sqlalchemy import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from trainyard.service.storage import repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.models import Run


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def Session(engine: Engine) -> sessionmaker[OrmSession]:
    return make_sessionmaker(engine)


@pytest.fixture
def dialect(engine: Engine) -> str:
    return engine.dialect.name


SPEC = xor(epochs=100)


@pytest.fixture
def make_run(Session: sessionmaker[OrmSession]):
    """Create a queued run in its own committed transaction; keyword arguments override ``create_run``'s."""

    def make(**overrides) -> Run:
        arguments = dict(spec=SPEC, name="xor", seed=0, tags=[], notes="", epochs_total=100) | overrides
        with Session() as session, session.begin():
            return repo.create_run(session=session, **arguments)

    return make
