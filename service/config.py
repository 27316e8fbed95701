"""Settings from ``TRAINYARD_*`` environment variables and a ``.env`` file, read in one place.

``Settings.from_env()`` reads the process environment and, for what the
environment leaves unset, the ``.env`` file of the current folder; it
validates every value and returns a frozen :class:`Settings`. ``Settings(...)``
takes only its arguments and the defaults: nothing reads the environment
implicitly, and nothing here reads anything at import time. An empty variable
counts as unset, so ``TRAINYARD_DATABASE_URL=`` in a compose file means the
local default. A ``TRAINYARD_*`` variable that is no setting is refused, since
a misspelt name would otherwise be ignored in silence; the few that other parts
of Trainyard read are listed in :data:`OTHER_VARIABLES`.

Each field's description is its row of the README's table of settings:
:func:`settings_table` renders the table, ``python -m trainyard.service.config``
prints it, and a test compares it with README.md.

>>> s = Settings.from_env({"TRAINYARD_DATA_DIR": "/srv/ty", "TRAINYARD_AUTH": "off"})
>>> s.database_url, s.auth
('sqlite:////srv/ty/trainyard.db', False)
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, DotEnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PREFIX = "TRAINYARD_"

#: The file of variables :meth:`Settings.from_env` reads from the current folder, under the environment's.
ENV_FILE = ".env"

#: Database backends the storage layer supports (the ``backend`` part of a SQLAlchemy URL).
DATABASE_BACKENDS = ("sqlite", "postgresql")

_AUTH_VALUES = {"on": True, "off": False}

MIB = 1024 * 1024

#: The longest a dashboard login may last (``TRAINYARD_SESSION_HOURS``): a year.
MAX_SESSION_HOURS = 24 * 365

#: Queue names: what every broker accepts as a queue or key name.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,200}")

#: Where the local database and broker live when their URLs are unset (``{data_dir}``: the data folder).
_LOCAL_URLS = {
    "database_url": "sqlite:///{data_dir}/trainyard.db",
    "broker_url": "sqla+sqlite:///{data_dir}/broker.db",
}


class ConfigError(ValueError):
    """A ``TRAINYARD_*`` variable holds a value that cannot be used; the message names the variable."""


class SettingDoc(NamedTuple):
    """One row of the settings table: the variable, its default and what it means (markdown)."""

    variable: str
    default: str
    meaning: str


#: The CLI client's variables (read by ``trainyard``'s click options, not here), listed with the settings.
CLIENT_VARIABLES: tuple[SettingDoc, ...] = (
    SettingDoc(
        "TRAINYARD_URL",
        "`<data dir>/url`, else `http://127.0.0.1:8000`",
        "For the CLI's client commands (`submit`, `runs`, ...): the address of the service. Same as `--url`. "
        "Unset: the address `trainyard up` serves, which it writes in the data dir (so `up --port 8001` needs no "
        "more), else port 8000 here.",
    ),
    SettingDoc(
        "TRAINYARD_TOKEN",
        "`<data dir>/token`",
        "For the CLI's client commands: the API token to send. Same as `--token`. Unset: the token "
        "`trainyard up` stored in the data dir, if that file exists.",
    ),
    SettingDoc(
        "TRAINYARD_PROJECT",
        "all projects (`default` for new runs)",
        "For the CLI's `submit`, `sweep`, `runs` and `sweeps`: the project to file new runs and sweeps under (where "
        "the spec or sweep file names none) and to list. Same as `--project`.",
    ),
)

#: ``TRAINYARD_*`` variables that are not settings but may share an environment or ``.env`` file with them, so
#: they are not refused as unknown: the CLI client's, docker compose's (``.env.example``), the tests' and benchmarks'.
OTHER_VARIABLES = frozenset(
    {doc.variable for doc in CLIENT_VARIABLES}
    | {"TRAINYARD_IMAGE", "TRAINYARD_PORT"}
    | {"TRAINYARD_TEST_POSTGRES_URL", "TRAINYARD_TEST_REDIS_URL", "TRAINYARD_SCREENSHOTS", "TRAINYARD_UPDATE_DOCS"}
)


def _setting(default: Any, description: str, *, shown_default: str | None = None) -> Any:
    """A field whose description (and default, or ``shown_default`` when that says it better) go to the table."""
    extra = None if shown_default is None else {"shown_default": shown_default}
    return Field(default, description=description, json_schema_extra=extra)


def _local_url(field_name: str) -> str:
    return "`" + _LOCAL_URLS[field_name].format(data_dir="<data dir>") + "`"


class Settings(BaseSettings):
    """The service's configuration, typed and validated.

    Every field is read from ``TRAINYARD_<FIELD>`` by :meth:`from_env`, and its
    description is the meaning in the README's table. ``TRAINYARD_URL``,
    ``TRAINYARD_TOKEN`` and ``TRAINYARD_PROJECT`` are the CLI's, read by the client commands, not here.

    Raises
    ------
    ConfigError
        On construction, if a value is invalid; the message names the variable.
    """

    # env_file, env_ignore_empty and case_sensitive govern the .env file's reading in from_env (names kept in their
    # case, so a lowercase one is refused as unknown rather than matched).
    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_file=ENV_FILE,
        env_ignore_empty=True,
        case_sensitive=True,
        frozen=True,
        extra="forbid",
        str_strip_whitespace=True,
    )

    data_dir: Path = _setting(
        "./trainyard-data",
        "Folder of the local mode's files: the SQLite database and broker. Made when first needed, readable by its "
        "owner alone (0700, its files 0600); `trainyard up` closes one that is not.",
    )
    database_url: str = _setting(
        None,
        "SQLAlchemy URL of the database: `sqlite:///PATH` or `postgresql+psycopg://USER:PASSWORD@HOST/DB` "
        "(`postgresql://` means the psycopg 3 driver).",
        shown_default=_local_url("database_url"),
    )
    broker_url: str = _setting(
        None,
        "Celery broker URL: `redis://HOST:6379/0` when deployed, a serverless transport in the data dir locally.",
        shown_default=_local_url("broker_url"),
    )
    auth: bool = _setting(
        True,
        "`on`: every /api call needs `Authorization: Bearer <token>`. `off`: no checks, for a trusted local machine.",
    )
    secret_key: str | None = _setting(
        None,
        "Signs the dashboard's session cookies; the same for every API process. Unset: a random key is made once "
        "and kept in the data folder (mode 0600). Set it when API processes do not share a data folder.",
        shown_default="a random key kept in `<data dir>/secret_key`",
    )
    session_hours: float = _setting(
        12.0,
        "How long a dashboard login lasts, in hours from the login (using it does not extend it); the browser's "
        f"cookie expires with it. Logging out, or revoking the token, ends it sooner. At most {MAX_SESSION_HOURS:g}.",
    )
    queue: str = _setting(
        "trainyard",
        "Name of the broker queue the API sends runs to and the workers read; the same on both sides.",
    )
    worker_concurrency: int = _setting(
        1,
        "Training processes per worker (`trainyard worker`, `python -m trainyard.worker`); each gets cores ÷ this "
        "many BLAS threads.",
    )
    lease_seconds: float = _setting(
        30.0,
        "A worker's lease on the run it trains, renewed at every flush. A run whose worker died is resumed "
        "by another this long after its last flush (plus up to one reconciler pass, also this long).",
    )
    flush_seconds: float = _setting(
        0.5,
        "Most time between two writes of a training run's new epochs, weights, checkpoint and lease "
        "(one transaction each); also how soon a cancel is seen.",
    )
    weights_budget_mb: float = _setting(
        64.0,
        "Weights kept per run, in MiB: every epoch's while they fit, else every k-th epoch's so they do "
        "(always the first, best and last). A spec's `snapshot_every` overrides.",
    )
    max_queued_runs: int = _setting(
        1000,
        "Most runs one API token may have queued at once (with auth off: all of them together); a submit or "
        "sweep past it is refused with `429`, saying how many are queued.",
    )
    track_timeout_seconds: float = _setting(
        600.0,
        "A tracked run (logged by a client over the API) that sends nothing for this long is failed by the "
        "workers' reconciler with `lost contact with the client`.",
    )
    max_datasets_gb: float = _setting(
        10.0,
        "Most space, in GiB, all uploaded datasets may take together; an upload past it is refused with `413`.",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError("; ".join(_explain(error) for error in exc.errors())) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Construction takes its arguments alone: a test or caller gets what it wrote, whatever the environment."""
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> Settings:
        """Read and validate every ``TRAINYARD_*`` setting from ``environ``.

        Parameters
        ----------
        environ : mapping of str to str
            The variables. The process environment (the default) is read with
            the ``.env`` file of the current folder, whose variables count
            where the environment leaves one unset; any other mapping is read
            alone.
        **overrides
            Field values that take precedence over every variable (a command
            line option, say).

        Raises
        ------
        ConfigError
            If a variable holds an invalid value, or a ``TRAINYARD_*``
            variable is no setting; the message names the variable.
        """
        layers: dict[str, Mapping[str, str | None]] = {"": environ}
        if environ is os.environ:
            layers[f" in {ENV_FILE}"] = DotEnvSettingsSource(cls).env_vars
        unknown = [problem for where, variables in layers.items() for problem in _unknown(variables, where)]
        if unknown:
            raise ConfigError("; ".join(unknown))
        values: dict[str, Any] = {}
        for variables in reversed(layers.values()):
            values.update(_read(variables))
        return cls(**{**values, **overrides})

    @property
    def max_datasets_bytes(self) -> int:
        """Bytes all uploads may take together."""
        return int(self.max_datasets_gb * 1024 * MIB)

    @property
    def weights_budget_bytes(self) -> int:
        """Bytes of weights kept per run (before a spec's ``snapshot_every``)."""
        return int(self.weights_budget_mb * MIB)

    @property
    def session_lifetime(self) -> dt.timedelta:
        """How long a dashboard login lasts."""
        return dt.timedelta(hours=self.session_hours)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _absolute(cls, value: Any) -> Any:
        """``~`` expanded and made absolute, so a process that changes folder still finds its data."""
        if isinstance(value, str | os.PathLike):
            return Path(os.path.abspath(os.path.expanduser(str(value).strip())))
        return value

    @field_validator("database_url", "broker_url", mode="before")
    @classmethod
    def _in_data_dir(cls, value: Any, info: ValidationInfo) -> Any:
        """Unset, the database and the broker are files in the data folder (local mode)."""
        if value is not None:
            return value
        if "data_dir" not in info.data:
            raise ValueError(f"has no default without a valid {PREFIX}DATA_DIR")
        return _LOCAL_URLS[info.field_name].format(data_dir=info.data["data_dir"])

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"is not a database URL ({exc})") from exc
        backend = url.get_backend_name()
        if backend not in DATABASE_BACKENDS:
            raise ValueError(f"names an unsupported database {backend!r}; use sqlite:///PATH or postgresql+psycopg://...")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, value: str) -> str:
        scheme, sep, _ = value.partition("://")
        if not sep or not scheme:
            raise ValueError(f"is not a broker URL (expected SCHEME://...): {value!r}")
        return value

    @field_validator("auth", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        """``on`` or ``off`` in any case; not pydantic's wider idea of a bool (``yes``, ``0``...)."""
        if not isinstance(value, str):
            return value
        try:
            return _AUTH_VALUES[value.strip().lower()]
        except KeyError:
            raise ValueError(f"must be 'on' or 'off', not {value!r}") from None

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if not _QUEUE_NAME.fullmatch(value):
            raise ValueError(f"must be 1 to 200 letters, digits and _.:- , not {value!r}")
        return value

    @field_validator("worker_concurrency", "max_queued_runs", mode="before")
    @classmethod
    def _positive_whole(cls, value: Any) -> int:
        return int(_positive(value, whole=True))

    @field_validator("lease_seconds", "flush_seconds", "weights_budget_mb", "max_datasets_gb",
                     "track_timeout_seconds", mode="before")
    @classmethod
    def _positive_number(cls, value: Any) -> float:
        return _positive(value, whole=False)

    @field_validator("session_hours", mode="before")
    @classmethod
    def _session_hours(cls, value: Any) -> float:
        hours = _positive(value, whole=False)
        if hours > MAX_SESSION_HOURS:
            raise ValueError(f"must be at most {MAX_SESSION_HOURS} (a year), not {value!r}")
        return hours


def _variable(field_name: str) -> str:
    """The variable a field is read from: ``data_dir`` from ``TRAINYARD_DATA_DIR``."""
    return PREFIX + field_name.upper()


#: Every setting's variable, and the field it fills.
_FIELDS = {_variable(name): name for name in Settings.model_fields}


def _read(variables: Mapping[str, str | None]) -> dict[str, str]:
    """The settings in ``variables``, by field name: stripped, an empty one left out as unset."""
    found = {name: (variables.get(variable) or "").strip() for variable, name in _FIELDS.items()}
    return {name: value for name, value in found.items() if value}


def _unknown(variables: Mapping[str, str | None], where: str) -> list[str]:
    """A complaint for each non-empty ``TRAINYARD_*`` variable (in any case) that nothing in Trainyard reads."""
    suffixes = [variable.removeprefix(PREFIX) for variable in [*_FIELDS, *(doc.variable for doc in CLIENT_VARIABLES)]]
    complaints = []
    for name, value in sorted(variables.items()):
        if name.upper().startswith(PREFIX) and name not in _FIELDS and name not in OTHER_VARIABLES and value:
            close = difflib.get_close_matches(name.upper().removeprefix(PREFIX), suffixes, n=1, cutoff=0.6)
            hint = f" (did you mean {PREFIX}{close[0]}?)" if close else ""
            complaints.append(f"{name}{where} is not a Trainyard setting{hint}")
    return complaints


def _positive(value: Any, *, whole: bool) -> float:
    """``value`` as a positive finite number (a whole one with ``whole``), else a ValueError naming it."""
    try:
        number = math.nan if isinstance(value, bool) else float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0) or (whole and not number.is_integer()):
        kind = "a positive whole number" if whole else "a positive number"
        raise ValueError(f"must be {kind}, not {value!r}")
    return number


def _explain(error: ErrorDetails) -> str:
    """One validation error as a sentence naming the variable."""
    name = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        return f"{name!r} is not a setting; the settings are {', '.join(Settings.model_fields)}"
    if error["type"] == "value_error":
        return f"{_variable(name)} {error['ctx']['error']}"
    return f"{_variable(name)}: {error['msg']}"


def _shown_default(field_name: str) -> str:
    field = Settings.model_fields[field_name]
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    default = field.default
    if isinstance(default, bool):
        return "`on`" if default else "`off`"
    return f"`{default:g}`" if isinstance(default, int | float) else f"`{default}`"


def settings_doc() -> tuple[SettingDoc, ...]:
    """Every row of the settings table: the service's settings in field order, then the CLI client's variables."""
    service = tuple(
        SettingDoc(_variable(name), _shown_default(name), field.description or "")
        for name, field in Settings.model_fields.items()
    )
    return service + CLIENT_VARIABLES


def settings_table() -> str:
    """The README's table of settings, in markdown."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{doc.variable}` | {doc.default} | {doc.meaning} |" for doc in settings_doc()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
