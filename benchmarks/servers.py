"""The servers the benchmarks use: the machine's PostgreSQL and Redis, as the tests find them.

``TRAINYARD_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
is used only to create and drop a database of the benchmark's own;
``TRAINYARD_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) is the broker.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
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


def free_port() -> int:
    """A TCP port of 127.0.0.1 free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base: str, server: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until ``server`` (the API at ``base``) answers ``/readyz``; RuntimeError if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("gunicorn did not become ready")
