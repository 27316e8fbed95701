"""Settings from ``TRAINYARD_*`` environment variables, read in one place.

``Settings.from_env()`` reads the environment once and returns a frozen
:class:`Settings`; nothing here reads anything at import time.  Every variable
is listed in :data:`SETTINGS_DOC` (variable, default, meaning), which the
README's table of settings follows.  An empty variable counts as unset, so
``TRAINYARD_DATABASE_URL=`` in a compose file means the local default.

>>> s = Settings.from_env({"TRAINYARD_DATA_DIR": "/srv/ty", "TRAINYARD_AUTH": "off"})
>>> s.database_url, s.auth
('sqlite:////srv/ty/trainyard.db', False)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PREFIX = "TRAINYARD_"

#: Database backends the storage layer supports (the ``backend`` part of a SQLAlchemy URL).
DATABASE_BACKENDS = ("sqlite", "postgresql")

_AUTH_VALUES = {"on": True, "off": False}


class ConfigError(ValueError):
    """A ``TRAINYARD_*`` variable holds a value that cannot be used; the message names the variable."""


class SettingDoc(NamedTuple):
    """One row of the settings table: the variable, its default and what it means."""

    variable: str
    default: str
    meaning: str


#: Every setting, in the order the README lists them.
SETTINGS_DOC: tuple[SettingDoc, ...] = (
    SettingDoc(
        "TRAINYARD_DATA_DIR",
        "./trainyard-data",
        "Folder of the local mode's files: the SQLite database and broker. Made when first needed.",
    ),
    SettingDoc(
        "TRAINYARD_DATABASE_URL",
        "sqlite:///<data dir>/trainyard.db",
        "SQLAlchemy URL of the database: `sqlite:///PATH` or `postgresql+psycopg://USER:PASSWORD@HOST/DB` "
        "(`postgresql://` means the psycopg 3 driver).",
    ),
    SettingDoc(
        "TRAINYARD_BROKER_URL",
        "sqla+sqlite:///<data dir>/broker.db",
        "Celery broker URL: `redis://HOST:6379/0` when deployed, a serverless transport in the data dir locally.",
    ),
    SettingDoc(
        "TRAINYARD_AUTH",
        "on",
        "`on`: every /api call needs `Authorization: Bearer <token>`. `off`: no checks, for a trusted local machine.",
    ),
    SettingDoc(
        "TRAINYARD_SECRET_KEY",
        "(unset)",
        "Secret for signing (Flask sessions of the dashboard). Unset: none is configured.",
    ),
)


@dataclass(frozen=True)
class Settings:
    """The service's configuration, typed and validated.

    Attributes
    ----------
    data_dir : Path
        Absolute path of the data folder (not created here).
    database_url : str
        SQLAlchemy URL of the database (its backend is one of :data:`DATABASE_BACKENDS`).
    broker_url : str
        Celery broker URL.
    auth : bool
        Whether API calls need a bearer token.
    secret_key : str or None
        The secret key, or None when unset.
    """

    data_dir: Path
    database_url: str
    broker_url: str
    auth: bool = True
    secret_key: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read and validate every ``TRAINYARD_*`` setting from ``environ``.

        Raises
        ------
        ConfigError
            If a variable holds an invalid value; the message names the variable.
        """
        data_dir = _data_dir(_get(environ, "DATA_DIR") or "./trainyard-data")
        return cls(
            data_dir=data_dir,
            database_url=_database_url(_get(environ, "DATABASE_URL") or f"sqlite:///{data_dir / 'trainyard.db'}"),
            broker_url=_broker_url(_get(environ, "BROKER_URL") or f"sqla+sqlite:///{data_dir / 'broker.db'}"),
            auth=_auth(_get(environ, "AUTH") or "on"),
            secret_key=_get(environ, "SECRET_KEY") or None,
        )


def _get(environ: Mapping[str, str], name: str) -> str:
    """The stripped value of ``TRAINYARD_<name>``, or ``""`` when unset."""
    return environ.get(PREFIX + name, "").strip()


def _data_dir(value: str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(value)))


def _database_url(value: str) -> str:
    name = PREFIX + "DATABASE_URL"
    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise ConfigError(f"{name}: not a database URL ({exc})") from exc
    backend = url.get_backend_name()
    if backend not in DATABASE_BACKENDS:
        raise ConfigError(f"{name}: unsupported database {backend!r}; use sqlite:///PATH or postgresql+psycopg://...")
    return value


def _broker_url(value: str) -> str:
    scheme, sep, _ = value.partition("://")
    if not sep or not scheme:
        raise ConfigError(f"{PREFIX}BROKER_URL: not a broker URL (expected SCHEME://...): {value!r}")
    return value


def _auth(value: str) -> bool:
    try:
        return _AUTH_VALUES[value.lower()]
    except KeyError:
        raise ConfigError(f"{PREFIX}AUTH must be 'on' or 'off', not {value!r}") from None
