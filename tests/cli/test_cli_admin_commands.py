"""The `trainyard` command's database and token commands, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from trainyard.cli import main
from trainyard.service.storage.db import make_engine
from trainyard.service.storage.migrate import head_revision


def run(url: str, *args: str):
    result = CliRunner().invoke(main, list(args), env={"TRAINYARD_DATABASE_URL": url}, catch_exceptions=False)
    return result


def test_db_upgrade_then_current(database_url):
    before = run(database_url, "db", "current")
    assert before.exit_code == 0 and "database: (empty)" in before.output
    up = run(database_url, "db", "upgrade")
    assert up.exit_code == 0, up.output
    assert f"database at revision {head_revision()}" in up.output
    assert run(database_url, "db", "upgrade").exit_code == 0  # idempotent
    assert f"database: {head_revision()}" in run(database_url, "db", "current").output


def test_commands_refuse_a_schema_that_is_behind(database_url):
    result = run(database_url, "token", "list")
    assert result.exit_code == 1
    assert "trainyard db upgrade" in result.output


def test_token_create_list_revoke(url):
    created = run(url, "token", "create", "--scope", "write", "--name", "laptop")
    assert created.exit_code == 0, created.output
    plaintext = created.stdout.strip()
    assert plaintext.startswith("ty_") and len(plaintext) > 40
    token_id = created.stderr.split()[1]

    listed = run(url, "token", "list")
    assert listed.exit_code == 0
    assert token_id in listed.output and "laptop" in listed.output and "write" in listed.output
    assert plaintext not in listed.output and "active" in listed.output

    engine = make_engine(url)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT token_hash FROM api_tokens")).scalars().all()
    engine.dispose()
    assert stored == [hashlib.sha256(plaintext.encode()).hexdigest()]  # the hash, never the token

    revoked = run(url, "token", "revoke", token_id)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert "revoked 20" in run(url, "token", "list").output
    missing = run(url, "token", "revoke", "nope")
    assert missing.exit_code == 1 and "no token with id nope" in missing.output


def test_bad_scope_and_bad_setting_are_clear_errors(url):
    bad_scope = run(url, "token", "create", "--scope", "root")
    assert bad_scope.exit_code == 2 and "--scope" in bad_scope.output
    env = {"TRAINYARD_DATABASE_URL": url, "TRAINYARD_AUTH": "maybe"}
    bad_auth = CliRunner().invoke(main, ["token", "list"], env=env)
    assert bad_auth.exit_code == 1 and "TRAINYARD_AUTH" in bad_auth.output


def test_installed_console_script_upgrades_a_database_outside_the_checkout(tmp_path):
    """`trainyard db upgrade` from another folder: the migrations ship inside the package."""
    script = Path(sys.executable).with_name("trainyard")
    if not script.exists():
        pytest.skip(f"the trainyard console script is not installed next to {sys.executable} (pip install the project)")
    db = tmp_path / "elsewhere" / "ty.db"
    env = {**os.environ, "TRAINYARD_DATABASE_URL": f"sqlite:///{db}"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(script), "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert db.exists() and head_revision() in done.stdout
