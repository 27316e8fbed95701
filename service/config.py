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

import math
import os
import re
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

MIB = 1024 * 1024

#: Queue names: what every broker accepts as a queue or key name.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


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
        "a random key kept in `<data dir>/secret_key`",
        "Signs the dashboard's session cookies; the same for every API process. Unset: a random key is made once "
        "and kept in the data folder (mode 0600). Set it when API processes do not share a data folder.",
    ),
    SettingDoc(
        "TRAINYARD_QUEUE",
        "trainyard",
        "Name of the broker queue the API sends runs to and the workers read; the same on both sides.",
    ),
    SettingDoc(
        "TRAINYARD_WORKER_CONCURRENCY",
        "1",
        "Training processes per worker (`trainyard worker`, `python -m worker`); each gets cores ÷ this many "
        "BLAS threads.",
    ),
    SettingDoc(
        "TRAINYARD_LEASE_SECONDS",
        "30",
        "A worker's lease on the run it trains, renewed at every flush. A run whose worker died is resumed "
        "by another this long after its last flush (plus up to one reconciler pass, also this long).",
    ),
    SettingDoc(
        "TRAINYARD_FLUSH_SECONDS",
        "0.5",
        "Most time between two writes of a training run's new epochs, weights, checkpoint and lease "
        "(one transaction each); also how soon a cancel is seen.",
    ),
    SettingDoc(
        "TRAINYARD_WEIGHTS_BUDGET_MB",
        "64",
        "Weights kept per run, in MiB: every epoch's while they fit, else every k-th epoch's so they do "
        "(always the first, best and last). A spec's `snapshot_every` overrides.",
    ),
    SettingDoc(
        "TRAINYARD_URL",
        "http://127.0.0.1:8000",
        "For the CLI's client commands (`submit`, `runs`, ...): the address of the service. Same as `--url`.",
    ),
    SettingDoc(
        "TRAINYARD_TOKEN",
        "<data dir>/token",
        "For the CLI's client commands: the API token to send. Same as `--token`. Unset: the token "
        "`trainyard up` stored in the data dir, if that file exists.",
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
    queue : str
        The broker queue of training runs.
    worker_concurrency : int
        Training processes of a worker started without an explicit concurrency.
    lease_seconds : float
        Length of a worker's lease on a run.
    flush_seconds : float
        Most time between two flushes of a training run.
    weights_budget_bytes : int
        Bytes of weights kept per run (before ``snapshot_every``).

    ``TRAINYARD_URL`` and ``TRAINYARD_TOKEN`` are the CLI's, read by the
    client commands, not here.
    """

    data_dir: Path
    database_url: str
    broker_url: str
    auth: bool = True
    secret_key: str | None = None
    queue: str = "trainyard"
    worker_concurrency: int = 1
    lease_seconds: float = 30.0
    flush_seconds: float = 0.5
    weights_budget_bytes: int = 64 * MIB

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
            queue=_queue(_get(environ, "QUEUE") or "trainyard"),
            worker_concurrency=int(_number(environ, "WORKER_CONCURRENCY", "1", integer=True)),
            lease_seconds=_number(environ, "LEASE_SECONDS", "30"),
            flush_seconds=_number(environ, "FLUSH_SECONDS", "0.5"),
            weights_budget_bytes=int(_number(environ, "WEIGHTS_BUDGET_MB", "64") * MIB),
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


def _queue(value: str) -> str:
    if not _QUEUE_NAME.fullmatch(value):
        raise ConfigError(f"{PREFIX}QUEUE: use 1 to 200 letters, digits and _.:- , not {value!r}")
    return value


def _number(environ: Mapping[str, str], name: str, default: str, *, integer: bool = False) -> float:
    """The positive number in ``TRAINYARD_<name>`` (``default`` when unset); a whole one with ``integer``."""
    raw = _get(environ, name) or default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0) or (integer and not value.is_integer()):
        kind = "a positive whole number" if integer else "a positive number"
        raise ConfigError(f"{PREFIX}{name} must be {kind}, not {raw!r}")
    return value
