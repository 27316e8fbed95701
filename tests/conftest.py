"""Shared test configuration and the database fixtures of the service's tests.

Tests that need a server skip with a reason on a machine without it; under
``CI=true`` every server is there, so a skip means something is broken and
fails the run.

``database_url`` is an empty database: a SQLite file in ``tmp_path``, or a
PostgreSQL database created for the test (``trainyard_t_<random>``) and
dropped after it.  The PostgreSQL server is ``TRAINYARD_TEST_POSTGRES_URL``
(default: ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, an
administrative database used only to create and drop the test's own
databases).  ``url`` is a database of the test's own migrated to head: a copy
of a template the migrations made once per test process, so the schema always
comes from the migrations.  ``backend`` says which database a test runs on.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
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
    """The URL of an empty database created for this test alone, dropped (connections and all) after it."""
    with factories.postgres_database(postgres_admin) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_template(postgres_admin: Engine) -> Iterator[str]:
    """The name of a database migrated to head once per test process, which ``url`` copies for each test."""
    with factories.postgres_database(postgres_admin) as template:
        upgrade(template)
        yield make_url(template).database


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per test process, which ``url`` copies for each test."""
    path = tmp_path_factory.mktemp("template") / "trainyard.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The database the test runs on: every test that asks for a database runs on both."""
    return request.param


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file in ``tmp_path`` or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'trainyard.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own, migrated to head: a copy of this process's migrated template.

    A copy costs a few milliseconds where running the migrations costs a fifth of a second (PostgreSQL) or a
    fiftieth (SQLite); the schema still comes from the migrations alone.
    """
    if backend == "sqlite":
        path = tmp_path / "data" / "trainyard.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("postgres_template")
    with factories.postgres_database(request.getfixturevalue("postgres_admin"), template=template) as copy:
        yield copy


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
