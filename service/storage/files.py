"""Files only their owner may read: the local mode's data folder (0700) and the files Trainyard keeps in it (0600).

The data folder holds every run, upload and token hash (``trainyard.db``,
with SQLite's ``-wal`` and ``-shm`` files beside it), the queue
(``broker.db``), the admin token and the key that signs the dashboard's
sessions.  Created with the usual umask (022) all of it would be readable by
every user of the machine, so:

- :func:`make_private_folder` makes a missing folder 0700;
- :func:`create_private_file` makes a missing file 0600 and empty, so that
  SQLite opening it next keeps it so: SQLite creates a new database file with
  the default permissions (0644 under the usual umask), but gives its
  ``-wal``, ``-shm`` and ``-journal`` files the permissions of the database
  file, so a database made 0600 has every file of it 0600;
- :func:`prepare_sqlite_file` does both for a SQLite URL, before a connection creates the file;
- :func:`make_private` takes the group's and others' permissions away from a
  folder that already exists and the files named in it (a data folder made by
  an older Trainyard), and says what it changed, so ``trainyard up`` can tell
  its user once.

No umask is changed: it is the whole process's, and another thread creating a
file meanwhile would get it too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import URL, make_url

#: Permissions of the data folder, and of the files in it.
FOLDER_MODE = 0o700
FILE_MODE = 0o600

#: The files SQLite keeps beside a database ``NAME``: ``NAME-wal``, ``NAME-shm`` and ``NAME-journal``.
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")

_SHARED = 0o077


def make_private_folder(folder: Path) -> None:
    """Make ``folder`` (0700) if it is missing; missing parents get the usual permissions.  An existing one is
    left as it is (see :func:`make_private`)."""
    Path(folder).mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)


def create_private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist; an existing file is left as it is."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
    except FileExistsError:
        pass


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite database URL; None for any other database, an in-memory one or a ``file:`` URI."""
    url = make_url(url)
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def prepare_sqlite_file(url: str | URL) -> None:
    """For a SQLite file URL, make its folder (0700) and the file (0600) if they are missing; others: nothing."""
    path = sqlite_file(url)
    if path is not None:
        make_private_folder(path.parent)
        create_private_file(path)


@dataclass
class Privacy:
    """What :func:`make_private` did: the paths it made private, and those it could not change (with why)."""

    changed: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)


def make_private(folder: Path, names: Iterable[str]) -> Privacy:
    """Take the group's and others' permissions away from ``folder`` and the files ``names`` in it.

    Only the files named are changed, never a symbolic link, and never a
    folder shared by design (one with the sticky bit, such as ``/tmp``) or
    owned by another user: those are reported in ``refused`` instead.  A
    missing file is no concern.
    """
    done = Privacy()
    folder = Path(folder)
    info = folder.lstat()
    if info.st_mode & stat.S_ISVTX or info.st_uid != os.geteuid():
        reason = "it is shared (sticky)" if info.st_mode & stat.S_ISVTX else "it belongs to another user"
        done.refused.append((folder, f"{reason}: use a folder of your own"))
    else:
        _restrict(folder, info, done)
    for name in names:
        path = folder / name
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode):
            _restrict(path, info, done)
    return done


def _restrict(path: Path, info: os.stat_result, done: Privacy) -> None:
    mode = stat.S_IMODE(info.st_mode)
    if not mode & _SHARED:
        return
    try:
        os.chmod(path, mode & ~_SHARED)
    except OSError as exc:
        done.refused.append((path, exc.strerror or str(exc)))
    else:
        done.changed.append(path)
