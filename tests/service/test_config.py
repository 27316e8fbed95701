"""Settings from TRAINYARD_* variables and the .env file, and the README's table of them."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from trainyard.service import config
from trainyard.service.config import MIB, ConfigError, Settings

ROOT = Path(__file__).parents[2]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A current folder of the test's own, with no ``.env`` and no ``TRAINYARD_*`` variable in the environment."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith(config.PREFIX):
            monkeypatch.delenv(name)
    return tmp_path


def test_defaults(folder):
    settings = Settings.from_env({})
    data_dir = Path(os.path.abspath("trainyard-data"))
    assert settings == Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir}/trainyard.db",
        broker_url=f"sqla+sqlite:///{data_dir}/broker.db",
        auth=True,
        secret_key=None,
    )
    assert (settings.queue, settings.worker_concurrency) == ("trainyard", 1)
    assert (settings.lease_seconds, settings.flush_seconds, settings.weights_budget_bytes) == (30.0, 0.5, 64 * MIB)
    assert not data_dir.exists()  # reading settings makes nothing


def test_every_variable(tmp_path):
    settings = Settings.from_env(
        {
            "TRAINYARD_DATA_DIR": str(tmp_path),
            "TRAINYARD_DATABASE_URL": "postgresql+psycopg://ty:pw@db:5432/trainyard",
            "TRAINYARD_BROKER_URL": "redis://redis:6379/0",
            "TRAINYARD_AUTH": "OFF",
            "TRAINYARD_SECRET_KEY": "s3cret",
            "TRAINYARD_SESSION_HOURS": "0.5",
            "TRAINYARD_QUEUE": "runs.a",
            "TRAINYARD_WORKER_CONCURRENCY": "4",
            "TRAINYARD_LEASE_SECONDS": "12.5",
            "TRAINYARD_FLUSH_SECONDS": "0.25",
            "TRAINYARD_WEIGHTS_BUDGET_MB": "1.5",
            "UNRELATED": "x",
        }
    )
    assert settings.data_dir == tmp_path
    assert settings.database_url == "postgresql+psycopg://ty:pw@db:5432/trainyard"
    assert settings.broker_url == "redis://redis:6379/0"
    assert (settings.auth, settings.secret_key, settings.queue) == (False, "s3cret", "runs.a")
    assert settings.worker_concurrency == 4 and isinstance(settings.worker_concurrency, int)
    assert (settings.lease_seconds, settings.flush_seconds) == (12.5, 0.25)
    assert settings.weights_budget_bytes == int(1.5 * MIB)
    assert settings.session_lifetime == dt.timedelta(minutes=30)


def test_values_are_stripped_and_blank_ones_are_unset(tmp_path):
    settings = Settings.from_env(
        {
            "TRAINYARD_DATA_DIR": f"  {tmp_path}\n",
            "TRAINYARD_AUTH": " off ",
            "TRAINYARD_QUEUE": "   ",
            "TRAINYARD_SECRET_KEY": " ",
            "TRAINYARD_WORKER_CONCURRENCY": " 2 ",
        }
    )
    assert (settings.data_dir, settings.auth, settings.queue) == (tmp_path, False, "trainyard")
    assert (settings.secret_key, settings.worker_concurrency) == (None, 2)


def test_data_dir_sets_the_local_urls(tmp_path):
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(tmp_path / "d"), "TRAINYARD_DATABASE_URL": ""})
    assert settings.database_url == f"sqlite:///{tmp_path}/d/trainyard.db"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path}/d/broker.db"


def test_data_dir_is_absolute_with_home_expanded(folder, monkeypatch):
    monkeypatch.setenv("HOME", str(folder / "home"))
    assert Settings.from_env({"TRAINYARD_DATA_DIR": "~/ty"}).data_dir == folder / "home" / "ty"
    assert Settings.from_env({"TRAINYARD_DATA_DIR": "rel"}).data_dir == folder / "rel"


def test_reads_os_environ_by_default(folder, monkeypatch):
    monkeypatch.setenv("TRAINYARD_DATA_DIR", str(folder))
    monkeypatch.setenv("TRAINYARD_AUTH", "on")
    assert Settings.from_env().data_dir == folder


def test_reads_the_env_file_of_the_current_folder(folder):
    (folder / ".env").write_text(
        "# a comment\n"
        f"TRAINYARD_DATA_DIR={folder / 'from-file'}\n"
        "export TRAINYARD_AUTH=off\n"
        'TRAINYARD_SECRET_KEY="quoted key"\n'
        "TRAINYARD_DATABASE_URL=\n"
        "POSTGRES_PASSWORD=compose-reads-this\n"  # the compose .env's other variables are no concern of ours
        "TRAINYARD_PORT=8000\n"
    )
    settings = Settings.from_env()
    assert (settings.data_dir, settings.auth, settings.secret_key) == (folder / "from-file", False, "quoted key")
    assert settings.database_url == f"sqlite:///{folder}/from-file/trainyard.db"


def test_the_environment_takes_precedence_over_the_env_file(folder, monkeypatch):
    (folder / ".env").write_text("TRAINYARD_AUTH=off\nTRAINYARD_QUEUE=from-file\nTRAINYARD_LEASE_SECONDS=5\n")
    monkeypatch.setenv("TRAINYARD_AUTH", "on")
    monkeypatch.setenv("TRAINYARD_QUEUE", "")  # empty: unset, so the file's value counts
    settings = Settings.from_env()
    assert (settings.auth, settings.queue, settings.lease_seconds) == (True, "from-file", 5.0)


def test_an_invalid_value_in_the_env_file_names_the_variable(folder):
    (folder / ".env").write_text("TRAINYARD_FLUSH_SECONDS=soon\n")
    with pytest.raises(ConfigError, match="TRAINYARD_FLUSH_SECONDS must be a positive number, not 'soon'"):
        Settings.from_env()


def test_a_mapping_is_read_alone(folder, monkeypatch):
    """Neither the process environment nor a stray ``.env`` reaches ``from_env(mapping)`` or ``Settings(...)``."""
    (folder / ".env").write_text("TRAINYARD_AUTH=off\nTRAINYARD_QUEUE=from-file\nTRAINYARD_MISSPELT=1\n")
    monkeypatch.setenv("TRAINYARD_SECRET_KEY", "from-environment")
    monkeypatch.setenv("TRAINYARD_LEASE_SECONDS", "1")
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(folder)})
    assert (settings.auth, settings.queue, settings.secret_key, settings.lease_seconds) == (True, "trainyard", None, 30)
    direct = Settings(data_dir=folder, database_url="sqlite://", broker_url="memory://")
    assert (direct.auth, direct.queue, direct.secret_key, direct.lease_seconds) == (True, "trainyard", None, 30)


def test_overrides_take_precedence_over_every_variable(folder, monkeypatch):
    (folder / ".env").write_text("TRAINYARD_DATA_DIR=/from/file\nTRAINYARD_AUTH=off\n")
    monkeypatch.setenv("TRAINYARD_DATA_DIR", "/from/environment")
    settings = Settings.from_env(data_dir=folder / "given")
    assert (settings.data_dir, settings.auth) == (folder / "given", False)
    assert settings.database_url == f"sqlite:///{folder}/given/trainyard.db"


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("TRAINYARD_AUTH", "maybe", "TRAINYARD_AUTH must be 'on' or 'off', not 'maybe'"),
        ("TRAINYARD_AUTH", "yes", "TRAINYARD_AUTH must be 'on' or 'off'"),
        ("TRAINYARD_AUTH", "0", "TRAINYARD_AUTH must be 'on' or 'off'"),
        ("TRAINYARD_DATABASE_URL", "not a url", "TRAINYARD_DATABASE_URL is not a database URL"),
        ("TRAINYARD_DATABASE_URL", "mysql://u@h/db", "TRAINYARD_DATABASE_URL names an unsupported database 'mysql'"),
        ("TRAINYARD_BROKER_URL", "redis", "TRAINYARD_BROKER_URL is not a broker URL"),
        ("TRAINYARD_BROKER_URL", "://x", "TRAINYARD_BROKER_URL is not a broker URL"),
        ("TRAINYARD_QUEUE", "two words", "TRAINYARD_QUEUE must be 1 to 200 letters"),
        ("TRAINYARD_QUEUE", "q" * 201, "TRAINYARD_QUEUE must be 1 to 200 letters"),
        ("TRAINYARD_WORKER_CONCURRENCY", "0", "TRAINYARD_WORKER_CONCURRENCY must be a positive whole number"),
        ("TRAINYARD_WORKER_CONCURRENCY", "1.5", "TRAINYARD_WORKER_CONCURRENCY must be a positive whole number"),
        ("TRAINYARD_WORKER_CONCURRENCY", "two", "TRAINYARD_WORKER_CONCURRENCY must be a positive whole number"),
        ("TRAINYARD_LEASE_SECONDS", "-1", "TRAINYARD_LEASE_SECONDS must be a positive number, not '-1'"),
        ("TRAINYARD_LEASE_SECONDS", "inf", "TRAINYARD_LEASE_SECONDS must be a positive number"),
        ("TRAINYARD_FLUSH_SECONDS", "nan", "TRAINYARD_FLUSH_SECONDS must be a positive number"),
        ("TRAINYARD_FLUSH_SECONDS", "0", "TRAINYARD_FLUSH_SECONDS must be a positive number"),
        ("TRAINYARD_WEIGHTS_BUDGET_MB", "lots", "TRAINYARD_WEIGHTS_BUDGET_MB must be a positive number"),
        ("TRAINYARD_SESSION_HOURS", "0", "TRAINYARD_SESSION_HOURS must be a positive number, not '0'"),
        ("TRAINYARD_SESSION_HOURS", "8761", "TRAINYARD_SESSION_HOURS must be at most 8760 (a year), not '8761'"),
    ],
)
def test_invalid_values_name_the_variable(variable, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env({variable: value})


def test_every_invalid_variable_is_named_at_once():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"TRAINYARD_AUTH": "maybe", "TRAINYARD_LEASE_SECONDS": "-1"})
    assert "TRAINYARD_AUTH" in str(caught.value) and "TRAINYARD_LEASE_SECONDS" in str(caught.value)


def test_construction_validates_too(tmp_path):
    with pytest.raises(ConfigError, match="TRAINYARD_DATABASE_URL names an unsupported database 'mysql'"):
        Settings(data_dir=tmp_path, database_url="mysql://u@h/db", broker_url="memory://")
    with pytest.raises(ConfigError, match="'databse_url' is not a setting"):
        Settings(data_dir=tmp_path, databse_url="sqlite://", broker_url="memory://")


@pytest.mark.parametrize(
    "variable, suggestion",
    [
        ("TRAINYARD_DATABSE_URL", "TRAINYARD_DATABASE_URL"),
        ("trainyard_auth", "TRAINYARD_AUTH"),
        ("TRAINYARD_CONCURRENCY", "TRAINYARD_WORKER_CONCURRENCY"),
        ("TRAINYARD_COLOUR", None),
    ],
)
def test_unknown_variables_are_refused(variable, suggestion):
    with pytest.raises(ConfigError, match=f"{variable} is not a Trainyard setting") as caught:
        Settings.from_env({variable: "postgresql://db/ty"})
    hint = re.search(r"did you mean (\w+)\?", str(caught.value))
    assert (hint and hint[1]) == suggestion


def test_unknown_variables_in_the_env_file_are_refused(folder):
    (folder / ".env").write_text("TRAINYARD_LEASE_SECOND=5\n")
    with pytest.raises(ConfigError, match=r"TRAINYARD_LEASE_SECOND in \.env is not a Trainyard setting"):
        Settings.from_env()


def test_variables_trainyard_reads_elsewhere_are_not_refused():
    others = {name: "x" for name in config.OTHER_VARIABLES}
    assert Settings.from_env({**others, "TRAINYARD_MISSPELT": ""}).auth  # an empty variable is no variable


def test_settings_are_frozen():
    settings = Settings.from_env({})
    with pytest.raises(ValidationError, match="frozen"):
        settings.auth = False


def _names_in(paths):
    names = set()
    for path in paths:
        names |= set(re.findall(r"\bTRAINYARD_[A-Z_]*[A-Z]\b", path.read_text()))
    return names


def test_every_setting_is_documented():
    """Every ``TRAINYARD_*`` variable the code reads (service, worker, trainer, the CLI) has a row in the table.

    ``config.py`` itself is left out: it is where the table comes from, and it names the variables it does not read.
    """
    sources = [source for package in ("service", "worker", "trainer", "trainyard")
               for source in (ROOT / package).rglob("*.py")]
    used = _names_in(source for source in sources if source.name != "config.py" or source.parent.name != "service")
    documented = {row.variable for row in config.settings_doc()}
    assert used and used <= documented, sorted(used - documented)
    assert all(row.default and row.meaning for row in config.settings_doc())
    assert all(row.variable.startswith(config.PREFIX) for row in config.settings_doc())


def test_no_variable_trainyard_uses_is_refused():
    """A ``TRAINYARD_*`` name in the code, the tests, the benchmarks or the deployment files is a setting or listed
    in ``OTHER_VARIABLES``, so ``from_env`` never refuses one of Trainyard's own; and the list holds no stale name."""
    files = [path for folder in ("service", "worker", "trainer", "trainyard", "tests", "benchmarks", "examples")
             for path in (ROOT / folder).rglob("*") if path.suffix in (".py", ".json", ".sh", ".yml")]
    files += [ROOT / name for name in ("docker-compose.yml", ".env.example", "Dockerfile", ".ci/run")]
    used = _names_in(path for path in files if path.is_file() and path.resolve() != Path(__file__).resolve())
    settings = {row.variable for row in config.settings_doc()}
    assert used <= settings | config.OTHER_VARIABLES, sorted(used - settings - config.OTHER_VARIABLES)
    assert config.OTHER_VARIABLES <= used, sorted(config.OTHER_VARIABLES - used)


def _readme_table() -> str:
    """The table under README.md's ``## Settings``."""
    section = (ROOT / "README.md").read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def test_readme_table_is_the_generated_one():
    """README.md's table of settings is rendered from the fields' descriptions, so it cannot drift from the code."""
    table = config.settings_table()
    assert _readme_table() == table, (
        "README.md's settings table differs from the code's; replace it with this "
        f"(`python -m trainyard.service.config` prints it):\n\n{table}\n"
    )
