"""The installed package: one import name, ``trainyard``, and nothing of a user's folder in its way.

The folders ``trainer/``, ``service/``, ``worker/`` and ``migrations/`` install as ``trainyard.trainer`` and so
on; no code imports them by their bare names (``tests/conftest.py`` also fails the run if any test did).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parents[1]

#: Names the wheel must never put at the top level of a user's environment.
BARE_NAMES = ("service", "worker", "trainer", "migrations")

#: What ``import trainyard`` must not load: it is the client's import, for notebooks and scripts.
SERVER_LIBRARIES = ("flask", "celery", "kombu", "sqlalchemy", "gunicorn")


def _run(code: str, cwd) -> dict:
    done = subprocess.run([sys.executable, "-P", "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_import_trainyard_loads_the_client_and_no_server_library(tmp_path):
    found = _run(
        "import json, sys, trainyard; "
        f"print(json.dumps({{'loaded': [m for m in {SERVER_LIBRARIES!r} if m in sys.modules], "
        "'client': trainyard.Client.__module__}))",
        tmp_path,
    )
    assert found == {"loaded": [], "client": "trainyard.client"}


def _loaded_by(module: str, cwd) -> list[str]:
    """The modules of the project and of the server libraries that importing ``module`` loads."""
    return _run(f"import json, sys, {module}; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
                f"('trainyard', *{SERVER_LIBRARIES!r}))))", cwd)


def test_imports_go_one_way_down(tmp_path):
    """The trainer loads nothing of the service or a server library; the service nothing of the worker or the
    entry layer; the worker nothing of the entry layer."""
    trainer = _loaded_by("trainyard.trainer", tmp_path)
    assert [m for m in trainer if not m.startswith("trainyard.trainer")] == ["trainyard"]
    service = _loaded_by("trainyard.service.app", tmp_path)
    assert not [m for m in service if m.startswith(("trainyard.worker", "trainyard.cli", "trainyard.local",
                                                   "trainyard.client"))]
    worker = _loaded_by("trainyard.worker", tmp_path)
    assert not [m for m in worker if m.startswith(("trainyard.cli", "trainyard.local", "trainyard.client"))]


def test_every_module_imports_under_trainyard_and_none_by_a_bare_name(tmp_path):
    """(``.wsgi`` is left out: it makes an app from the environment; Alembic loads the migrations' modules.)"""
    found = _run(
        "import importlib, json, pkgutil, sys; "
        "parts = [importlib.import_module(f'trainyard{p}') for p in ('', '.trainer', '.service', '.worker')]; "
        "names = [m.name for part in parts for m in pkgutil.walk_packages(part.__path__, part.__name__ + '.') "
        "         if not m.name.endswith(('__main__', '.wsgi')) and '.migrations.' not in m.name]; "
        "names = list(dict.fromkeys(names + ['trainyard.migrations'])); "
        "[importlib.import_module(name) for name in names]; "
        f"print(json.dumps({{'modules': names, 'bare': [m for m in {BARE_NAMES!r} if m in sys.modules]}}))",
        tmp_path,
    )
    assert found["bare"] == []
    assert {"trainyard.trainer.fit", "trainyard.service.app", "trainyard.worker.training", "trainyard.migrations",
            "trainyard.cli", "trainyard.local"} <= set(found["modules"])


def test_the_wheel_builds_with_the_oldest_setuptools_allowed_and_holds_one_top_level_name(tmp_path):
    """``build-system.requires`` names a setuptools that builds the project: the oldest release it allows builds
    the wheel from what the Docker build context holds, and the wheel holds ``trainyard`` alone, with every
    module of the mapped folders and their data files."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirement = next(Requirement(r) for r in pyproject["build-system"]["requires"] if r.startswith("setuptools"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    listed = subprocess.run([*pip, "index", "versions", "setuptools"], capture_output=True, text=True, timeout=120)
    if listed.returncode != 0:
        pytest.skip(f"PyPI's setuptools releases cannot be listed here: {listed.stderr.strip()[-300:]}")
    released = [Version(v) for v in re.search(r"Available versions: (.*)", listed.stdout)[1].split(", ")]
    oldest = min(v for v in released if v in requirement.specifier)
    subprocess.run([*pip, "install", "--quiet", f"setuptools=={oldest}"], check=True, timeout=300)

    source = tmp_path / "source"  # what .dockerignore lets into the build context, and nothing else
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    folders = pyproject["tool"]["setuptools"]["package-dir"]
    for folder in folders.values():
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([*pip, "wheel", "--no-build-isolation", "--no-deps", str(source), "-w", str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr

    with zipfile.ZipFile(next(tmp_path.glob("trainyard-*.whl"))) as wheel:
        names = set(wheel.namelist())
    assert {name.split("/")[0] for name in names if not name.startswith("trainyard-")} == {"trainyard"}
    for package, folder in folders.items():
        expected = {f"{package.replace('.', '/')}/{path.relative_to(source / folder)}"
                    for path in (source / folder).rglob("*") if path.is_file()}
        assert expected <= names, sorted(expected - names)  # every module and data file of the folder
