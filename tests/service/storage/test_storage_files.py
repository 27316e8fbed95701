"""The local mode's files are their owner's alone: SQLite databases (with their -wal and -shm) made 0600 in folders
made 0700, under the usual umask; an open folder of an older Trainyard made private, and only what it names."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from trainyard.service.storage.db import make_engine
from trainyard.service.storage.files import make_private, prepare_sqlite_file, sqlite_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems give users (022), whatever this process was started with."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_new_sqlite_database_and_its_wal_and_shm_are_private(tmp_path):
    path = tmp_path / "new" / "data" / "trainyard.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
        with engine.connect() as connection:  # open: the -wal and -shm are there
            connection.execute(text("SELECT * FROM t")).all()
            made = {file.name: mode(file) for file in path.parent.iterdir()}
    finally:
        engine.dispose()
    assert made == {"trainyard.db": 0o600, "trainyard.db-wal": 0o600, "trainyard.db-shm": 0o600}
    assert mode(path.parent) == 0o700
    assert mode(path.parent.parent) == 0o755  # a parent made on the way is an ordinary folder


def test_an_existing_database_and_folder_are_left_as_they_are(tmp_path):
    """A database a URL names outside the data folder may be shared on purpose (with a group, say)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o750)
    path = folder / "shared.db"
    path.write_bytes(b"")
    path.chmod(0o640)
    prepare_sqlite_file(f"sqlite:///{path}")
    assert mode(path) == 0o640 and mode(folder) == 0o750


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true",
                                 "postgresql+psycopg://u@h/db", "redis://h:6379/0"])
def test_other_databases_are_no_files(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sqlite_file(url) is None
    prepare_sqlite_file(url)
    assert list(tmp_path.iterdir()) == []


def test_make_private_closes_the_folder_and_the_named_files_only(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    for name in ("trainyard.db", "trainyard.db-wal", "notes.txt"):
        (folder / name).write_text("x")
        (folder / name).chmod(0o644)
    (folder / "private").write_text("x")
    (folder / "private").chmod(0o600)
    outside = tmp_path / "outside"
    outside.write_text("x")
    outside.chmod(0o644)
    (folder / "link").symlink_to(outside)

    done = make_private(folder, ["trainyard.db", "trainyard.db-wal", "trainyard.db-shm", "private", "link"])
    assert done.changed == [folder, folder / "trainyard.db", folder / "trainyard.db-wal"]
    assert done.refused == []
    assert {path.name: mode(path) for path in folder.iterdir() if not path.is_symlink()} == {
        "trainyard.db": 0o600, "trainyard.db-wal": 0o600, "notes.txt": 0o644, "private": 0o600}
    assert mode(folder) == 0o700 and mode(outside) == 0o644  # a link is not followed out of the folder
    assert make_private(folder, ["trainyard.db"]).changed == []  # nothing left to do


def test_make_private_leaves_a_shared_folder_alone_and_says_why(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp is
    (shared / "trainyard.db").write_text("x")
    (shared / "trainyard.db").chmod(0o644)
    done = make_private(shared, ["trainyard.db"])
    assert done.refused == [(shared, "it is shared (sticky): use a folder of your own")]
    assert done.changed == [shared / "trainyard.db"] and mode(shared) == 0o1777
