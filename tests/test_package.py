"""The installed package: one import name, ``trainyard``, and nothing of a user's folder in its way.

The folders ``trainer/``, ``service/``, ``worker/`` and ``migrations/`` install as ``trainyard.trainer`` and so
on; no code imports them by their bare names (``tests/conftest.py`` also fails the run if any test did).
"""

from __future__ import annotations

import json
import subprocess
import sys

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


def test_every_module_imports_under_trainyard_and_none_by_a_bare_name(tmp_path):
    found = _run(
        "import importlib, json, pkgutil, sys; "
        "parts = [importlib.import_module(f'trainyard{p}') for p in ('', '.trainer', '.service', '.worker')]; "
        "names = [m.name for part in parts for m in pkgutil.walk_packages(part.__path__, part.__name__ + '.') "
        "         if not m.name.endswith(('__main__', '.wsgi'))] + ['trainyard.migrations']; "  # wsgi makes an app
        "[importlib.import_module(name) for name in names]; "
        f"print(json.dumps({{'modules': names, 'bare': [m for m in {BARE_NAMES!r} if m in sys.modules]}}))",
        tmp_path,
    )
    assert found["bare"] == []
    assert {"trainyard.trainer.fit", "trainyard.service.app", "trainyard.worker.training", "trainyard.migrations",
            "trainyard.cli", "trainyard.local"} <= set(found["modules"])
