"""Alembic environment: Trainyard's models, batch mode on SQLite, other tables left alone.

The database comes from ``config.attributes["connection"]`` (an open
connection, used as is) or else the ``sqlalchemy.url`` option, which
:func:`trainyard.service.storage.migrate.alembic_config` sets.  Tables that are not in
the models (kombu's ``kombu_message`` and ``kombu_queue`` when the broker
shares the database) are invisible to autogenerate.

On SQLite the migration runs with foreign keys off (a batch operation drops
and recreates tables, and a drop with foreign keys on would cascade) and ends
with ``PRAGMA foreign_key_check``: a revision that leaves a dangling
reference fails and is rolled back.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection

from trainyard.service.storage import db, models
from trainyard.service.storage.migrate import ForeignKeyViolation, include_object

config = context.config
target_metadata = models.Base.metadata


def _configure(**kwargs: Any) -> None:
    context.configure(target_metadata=target_metadata, include_object=include_object, compare_type=True, **kwargs)


def _check_foreign_keys(connection: Connection) -> None:
    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if violations:
        raise ForeignKeyViolation(f"the migration left rows with dangling foreign keys: {violations[:10]}")


def _migrate(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    _configure(connection=connection, render_as_batch=sqlite)
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            _check_foreign_keys(connection)


def run_migrations_offline() -> None:
    """Write the SQL to standard output instead of running it (``--sql``)."""
    url = db.normalize_url(config.get_main_option("sqlalchemy.url"))
    _configure(url=url, literal_binds=True, render_as_batch=url.get_backend_name() == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the given connection, or through a new engine for the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    engine = db.make_engine(url, sqlite_foreign_keys=False, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
