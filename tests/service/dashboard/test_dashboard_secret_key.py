"""The session's secret key: ``TRAINYARD_SECRET_KEY``, or one made once in the data folder and shared."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from trainyard.service.app import create_app
from trainyard.service.auth import SECRET_KEY_FILE, persistent_secret_key
from trainyard.service.config import Settings
from trainyard.service.storage import repo


def test_a_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "data"
    key = persistent_secret_key(folder)
    path = folder / SECRET_KEY_FILE
    assert len(key) >= 43 and path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # the folder it made
    assert persistent_secret_key(folder) == key
    assert [p.name for p in folder.iterdir()] == [SECRET_KEY_FILE]  # no temporary file left behind


def test_processes_starting_together_share_one_key(tmp_path: Path) -> None:
    code = "import sys; from trainyard.service.auth import persistent_secret_key; " \
           "print(persistent_secret_key(sys.argv[1]))"
    processes = [subprocess.Popen([sys.executable, "-P", "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
                 for _ in range(4)]
    keys = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert len(keys) == 1 and keys == {(tmp_path / SECRET_KEY_FILE).read_text().strip()}


def test_a_broken_key_file_is_an_error_not_a_weak_key(tmp_path: Path) -> None:
    (tmp_path / SECRET_KEY_FILE).write_text("short\n")
    with pytest.raises(RuntimeError, match="no usable secret key"):
        persistent_secret_key(tmp_path)


def test_a_data_folder_that_cannot_be_made_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(RuntimeError, match="set TRAINYARD_SECRET_KEY"):
        persistent_secret_key(tmp_path / "a-file" / "data")


def test_apps_use_the_configured_key_or_share_the_made_one(url: str, tmp_path: Path) -> None:
    def app(secret_key: str | None):
        settings = Settings(data_dir=tmp_path, database_url=url, broker_url="memory://", secret_key=secret_key)
        made = create_app(settings)
        made.extensions["trainyard"].engine.dispose()
        return made

    first, second = app(None), app(None)
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] == persistent_secret_key(tmp_path)
    assert app("from-the-environment-" + "x" * 20).config["SECRET_KEY"] == "from-the-environment-" + "x" * 20
    cookie = first.config
    assert cookie["SESSION_COOKIE_HTTPONLY"] and cookie["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_a_session_made_by_one_app_is_valid_in_another(url: str, tmp_path: Path) -> None:
    """What gunicorn's workers and a restart need: the cookie one process signed, another accepts."""
    settings = Settings(data_dir=tmp_path, database_url=url, broker_url="memory://")
    apps = [create_app(settings) for _ in range(2)]
    try:
        Session = apps[0].extensions["trainyard"].Session
        with Session() as s, s.begin():
            token = repo.create_token(session=s, scope="read")[0]
        first = apps[0].test_client()
        page = first.get("/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        assert first.post("/login", data={"token": token, "csrf": csrf}).status_code == 303
        cookie = first.get_cookie("trainyard_session")
        second = apps[1].test_client()
        second.set_cookie("trainyard_session", cookie.value)
        assert second.get("/runs").status_code == 200
    finally:
        for made in apps:
            made.extensions["trainyard"].engine.dispose()
