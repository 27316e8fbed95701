"""Run the schema migrations, and tell whether a database is at the code's schema.

The Alembic configuration is built in code: the script location is the
installed ``migrations`` package's folder, so this works from any working
directory, inside a checkout or not, with no ``alembic.ini``::

    upgrade("sqlite:////srv/trainyard/trainyard.db")   # what `trainyard db upgrade` does
    check_schema(engine)                               # what the app does before it serves
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from trainyard import migrations

#: Where the Alembic environment and revisions are: the installed package's folder.
MIGRATIONS_DIR = Path(migrations.__file__).parent

UPGRADE_COMMAND = "trainyard db upgrade"


class SchemaError(RuntimeError):
    """The database's schema is not the one this code was written for."""


class SchemaBehind(SchemaError):
    """The database's schema is older than the code's (or the database is empty): it needs an upgrade."""


class ForeignKeyViolation(SchemaError):
    """A migration on SQLite (run with foreign keys off) left rows that reference missing rows; it was rolled back."""


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's filter: leave out reflected tables the models do not define (kombu's broker tables, for one)."""
    return not (type_ == "table" and reflected and compare_to is None)


def _url_string(url: str | URL) -> str:
    return url.render_as_string(hide_password=False) if isinstance(url, URL) else url


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic configuration for Trainyard's migrations, and for the database at ``url`` if given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", _url_string(url).replace("%", "%%"))  # configparser interpolation
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (the newest by default); an empty database is created."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"``: drop every table of Trainyard's)."""
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    """The revision the code needs: the newest in ``migrations/versions``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SchemaError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for a database no migration has touched."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Make sure the database is at the code's revision.

    Raises
    ------
    SchemaBehind
        If the database is empty or at an older revision; the message names
        the command that fixes it.
    SchemaError
        If the database is at a revision this code does not know (a newer
        version of Trainyard migrated it).
    """
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current is not None and current not in known:
        raise SchemaError(
            f"database schema is at {current}, which this version of trainyard does not know "
            f"(the code needs {head}): was it migrated by a newer version?"
        )
    raise SchemaBehind(
        f"database schema is at {current or 'base (no migration applied)'}, "
        f"the code needs {head}: run `{UPGRADE_COMMAND}`"
    )
