"""Settings from TRAINYARD_* variables."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from trainyard.service import config
from trainyard.service.config import SETTINGS_DOC, ConfigError, Settings


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    data_dir = Path(os.path.abspath("trainyard-data"))
    assert settings == Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir}/trainyard.db",
        broker_url=f"sqla+sqlite:///{data_dir}/broker.db",
        auth=True,
        secret_key=None,
    )
    assert not data_dir.exists()  # reading settings makes nothing


def test_every_variable(tmp_path):
    settings = Settings.from_env(
        {
            "TRAINYARD_DATA_DIR": str(tmp_path),
            "TRAINYARD_DATABASE_URL": "postgresql+psycopg://ty:pw@db:5432/trainyard",
            "TRAINYARD_BROKER_URL": "redis://redis:6379/0",
            "TRAINYARD_AUTH": "OFF",
            "TRAINYARD_SECRET_KEY": "s3cret",
            "UNRELATED": "x",
        }
    )
    assert settings.data_dir == tmp_path
    assert settings.database_url == "postgresql+psycopg://ty:pw@db:5432/trainyard"
    assert settings.broker_url == "redis://redis:6379/0"
    assert (settings.auth, settings.secret_key) == (False, "s3cret")


def test_data_dir_sets_the_local_urls(tmp_path):
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(tmp_path / "d"), "TRAINYARD_DATABASE_URL": ""})
    assert settings.database_url == f"sqlite:///{tmp_path}/d/trainyard.db"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path}/d/broker.db"


def test_reads_os_environ_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINYARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRAINYARD_AUTH", "on")
    assert Settings.from_env().data_dir == tmp_path


@pytest.mark.parametrize(
    "variable, value",
    [
        ("TRAINYARD_AUTH", "yes"),
        ("TRAINYARD_AUTH", "0"),
        ("TRAINYARD_DATABASE_URL", "not a url"),
        ("TRAINYARD_DATABASE_URL", "mysql://u@h/db"),
        ("TRAINYARD_BROKER_URL", "redis"),
        ("TRAINYARD_BROKER_URL", "://x"),
    ],
)
def test_invalid_values_name_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_settings_are_frozen():
    settings = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.auth = False


def test_every_setting_is_documented():
    """Every ``TRAINYARD_*`` variable the code reads (service, worker, CLI) has a row in ``SETTINGS_DOC``."""
    root = Path(__file__).parents[2]
    used = set()
    for package in ("service", "worker", "trainer"):
        for source in (root / package).rglob("*.py"):
            text = source.read_text()
            used |= set(re.findall(r"\bTRAINYARD_[A-Z_]+\b", text))
            used |= {config.PREFIX + name for name in re.findall(r'_get\(environ, "([A-Z_]+)"\)', text)}
    documented = {row.variable for row in SETTINGS_DOC}
    assert used and used <= documented, sorted(used - documented)
    assert all(row.default and row.meaning for row in SETTINGS_DOC)
    assert all(row.variable.startswith(config.PREFIX) for row in SETTINGS_DOC)


def test_readme_lists_every_setting():
    """The README's table of settings cannot drift from the code."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for doc in SETTINGS_DOC:
        assert f"| `{doc.variable}` |" in readme, doc.variable
