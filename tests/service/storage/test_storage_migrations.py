"""Migrations: empty to head and back on both databases, no drift from the models, the schema check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from trainyard import migrations
from trainyard.service.storage import models
from trainyard.service.storage.db import make_engine
from trainyard.service.storage.migrate import (
    MIGRATIONS_DIR,
    ForeignKeyViolation,
    SchemaBehind,
    SchemaError,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    include_object,
    upgrade,
)

TABLES = {"runs", "epochs", "metrics", "weights", "checkpoints", "sweeps", "datasets", "api_tokens", "browser_sessions"}


def _tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _drift(engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": include_object})
        return compare_metadata(context, models.Base.metadata)


def test_upgrade_empty_to_head(database_url):
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        assert _tables(engine) == set()
        upgrade(database_url)
        assert current_revision(engine) == head_revision()
        assert _tables(engine) == TABLES
    finally:
        engine.dispose()


def test_downgrade_to_base_and_up_again(database_url):
    engine = make_engine(database_url)
    try:
        upgrade(database_url)
        downgrade(database_url, "base")
        assert current_revision(engine) is None
        assert _tables(engine) == set()
        upgrade(database_url)
        assert current_revision(engine) == head_revision()
        assert _tables(engine) == TABLES
        upgrade(database_url)  # at head already: nothing to do
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_models_and_migrations_agree(url, engine):
    assert _drift(engine) == []


def test_autogenerate_ignores_tables_that_are_not_ours(url, engine):
    with engine.begin() as connection:  # what kombu's SQLAlchemy transport creates in local mode
        connection.execute(text("CREATE TABLE kombu_queue (id INTEGER PRIMARY KEY, name VARCHAR(200))"))
        connection.execute(text("CREATE TABLE kombu_message (id INTEGER PRIMARY KEY, payload TEXT)"))
    assert _drift(engine) == []


def test_autogenerate_finds_a_difference(url, engine):
    """The drift check is not vacuous: a column the migrations lack is reported."""
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE runs DROP COLUMN notes"))
    diffs = _drift(engine)
    assert [(d[0], d[3].name) for d in diffs] == [("add_column", "notes")]


def test_check_schema_behind_then_at_head(database_url):
    engine = make_engine(database_url)
    try:
        with pytest.raises(SchemaBehind, match="run `trainyard db upgrade`") as behind:
            check_schema(engine)
        assert f"the code needs {head_revision()}" in str(behind.value)
        upgrade(database_url)
        check_schema(engine)
        downgrade(database_url, "base")
        with pytest.raises(SchemaBehind, match="trainyard db upgrade"):
            check_schema(engine)
    finally:
        engine.dispose()


def test_check_schema_refuses_an_unknown_revision(url, engine):
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'fffffffff999'"))
    with pytest.raises(SchemaError, match="fffffffff999.*newer version") as raised:
        check_schema(engine)
    assert not isinstance(raised.value, SchemaBehind)


def test_migrations_are_found_through_the_package():
    assert MIGRATIONS_DIR == Path(migrations.__file__).parent
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()


def test_upgrade_works_from_any_directory(database_url, tmp_path):
    """No alembic.ini and no reliance on the working directory: run it from an unrelated folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = "import sys; from trainyard.service.storage.migrate import upgrade; upgrade(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-P", "-c", code, database_url], cwd=elsewhere, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert list(elsewhere.iterdir()) == []
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_sqlite_migrations_check_foreign_keys(tmp_path):
    """SQLite migrates with foreign keys off (batch mode drops tables), then checks them: dangling rows fail it."""
    url = f"sqlite:///{tmp_path / 'trainyard.db'}"
    upgrade(url)
    engine = make_engine(url, sqlite_foreign_keys=False)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO weights (run_id, epoch, data, size_bytes) VALUES ('gone', 1, x'00', 1)")
            )
        with pytest.raises(ForeignKeyViolation, match="dangling foreign keys"):
            upgrade(url)
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM weights"))
        upgrade(url)
    finally:
        engine.dispose()
