"""Shared test configuration and the database fixtures of the service's tests.

Tests that need a server skip with a reason on a machine without it; under
``CI=true`` every server is there, so a skip means something is broken and
fails the run.

``database_url`` is an empty database: a SQLite file in ``tmp_path``, or a
PostgreSQL database created for the test (``trainyard_t_<random>``) and
dropped after it.  The PostgreSQL server is ``TRAINYARD_TEST_POSTGRES_URL``
(default: ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, an
administrative database used only to create and drop the test's own
databases).  ``url`` is the same database migrated to head: the schema always
comes from the migrations.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import factories
import pytest
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from trainyard.service.storage.migrate import upgrade

IN_CI = os.environ.get("CI", "").lower() == "true"


#: Trainyard's folders, which install as ``trainyard.<name>``: importing one by its bare name is a bug.
BARE_NAMES = ("service", "worker", "trainer", "migrations")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    bare = [name for name in BARE_NAMES if name in sys.modules]
    if bare and reporter is not None:
        reporter.write_line(f"bare module(s) {', '.join(bare)} imported: use trainyard.<name>", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if IN_CI and skipped and exitstatus == 0:
        reporter.write_line(f"CI=true: {skipped} test(s) skipped; in CI every test must run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
    with factories.postgres_database(postgres_admin) as url:
        yield url


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


#: Debian's chromium (``.ci/run`` installs it): Playwright drives it and never downloads a browser of its own.
CHROMIUM = "/usr/bin/chromium"
#: Headless, and nothing that reaches for the network on its own (this machine's network is closed).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium under Playwright, one per test module; skips without either."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis: ``TRAINYARD_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``."""
    return os.environ.get("TRAINYARD_TEST_REDIS_URL") or DEFAULT_REDIS_URL


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis; skips when it is unreachable.  Tests use queues or keys of their own."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.skip(f"Redis not reachable at {redis_url}: {exc}")
    yield client
    client.close()
