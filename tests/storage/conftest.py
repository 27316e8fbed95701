"""Fixtures of the storage tests: a fresh database per test, on SQLite and on PostgreSQL.

``database_url`` is an empty database: a SQLite file in ``tmp_path``, or a
PostgreSQL database created for the test (``trainyard_t_<random>``) and
dropped after it.  The PostgreSQL server is ``TRAINYARD_TEST_POSTGRES_URL``
(default: ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, an
administrative database used only to create and drop the test's own
databases); when it cannot be reached, the PostgreSQL tests skip with the
reason, which fails a run under ``CI=true`` (see ``tests/conftest.py``).

``url`` is the same database migrated to head (the schema always comes from
the migrations), ``engine`` an engine for it and ``Session`` a session factory.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from service.storage import repo
from service.storage.db import make_engine, make_sessionmaker
from service.storage.migrate import upgrade
from service.storage.models import Run

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _postgres_admin_url() -> str:
    return os.environ.get("TRAINYARD_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An autocommit engine on the server's administrative database; skips when the server is unreachable."""
    url = make_url(_postgres_admin_url())
    engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        shown = url.render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL not reachable at {shown}: {exc.orig or exc}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_database(postgres_admin: Engine) -> Iterator[str]:
    """The URL of a database created for this test alone, dropped (connections and all) after it."""
    name = f"trainyard_t_{secrets.token_hex(6)}"
    with postgres_admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with postgres_admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty database: a SQLite file in ``tmp_path`` or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'trainyard.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def url(database_url: str) -> str:
    """The test's database, migrated to head."""
    upgrade(database_url)
    return database_url


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


SPEC = {
    "dataset": {"name": "xor"},
    "model": {"type": "mlp", "hidden": [{"units": 8, "activation": "tanh"}]},
    "optimizer": {"name": "sgd", "lr": 0.5},
    "epochs": 100,
}


@pytest.fixture
def make_run(Session: sessionmaker[OrmSession]):
    """Create a queued run in its own committed transaction; keyword arguments override ``create_run``'s."""

    def make(**overrides) -> Run:
        arguments = dict(spec=SPEC, name="xor", seed=0, tags=[], notes="", epochs_total=100) | overrides
        with Session() as session, session.begin():
            return repo.create_run(session=session, **arguments)

    return make
