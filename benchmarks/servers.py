"""The servers the benchmarks use: the machine's PostgreSQL and Redis, as the tests find them.

``TRAINYARD_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
is used only to create and drop a database of the benchmark's own;
``TRAINYARD_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) is the broker.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    """The Redis the benchmarks send to."""
    return os.environ.get("TRAINYARD_TEST_REDIS_URL") or DEFAULT_REDIS_URL


@contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped (connections and all) on exit."""
    admin = create_engine(
        make_url(os.environ.get("TRAINYARD_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL), isolation_level="AUTOCOMMIT"
    )
    name = f"trainyard_bench_{secrets.token_hex(6)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
