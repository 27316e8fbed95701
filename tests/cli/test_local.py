"""`trainyard up` and `trainyard api` as real processes: local mode (SQLite and the serverless broker) in a tmp folder.

Each test starts the command in a fresh data folder on a free port, with no
``TRAINYARD_*`` variable inherited, so it runs exactly what a new user runs:
a real Celery worker process and the API under gunicorn.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pty
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from click.testing import CliRunner, Result

from trainyard.cli import main
from trainyard.client import Client, ClientError
from trainyard.local import _announce, demo_specs, ensure_token, login_link, read_token, token_path
from trainyard.service.celery_config import declare_queue
from trainyard.service.config import Settings
from trainyard.service.storage import migrate, repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.repo import TOKEN_PREFIX
from trainyard.trainer import TrainSpec

#: ``trainyard`` as a process: the console script pip installed beside this Python.
TRAINYARD = [str(Path(sys.executable).with_name("trainyard"))]

#: Seconds to wait for ``up`` to answer, and to stop.
START_TIMEOUT = 60
STOP_TIMEOUT = 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any ``TRAINYARD_*`` setting or ``XDG_RUNTIME_DIR``, plus ``extra``."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("TRAINYARD_")}
    kept.pop("XDG_RUNTIME_DIR", None)
    return kept | extra


def _children() -> dict[int, list[int]]:
    """Every live process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(pid: int) -> set[int]:
    """The processes started by ``pid``, and by them, and so on."""
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (not gone, not a zombie)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Service:
    """A `trainyard up`, `api` or `worker` process, its address, its data folder and its output."""

    def __init__(self, args: list[str], data_dir: Path, port: int, log: Path, *, data_dir_in_env: bool = True):
        self.url = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self.log = log
        self.home = log.parent / "home"  # a home of its own: what the service writes there is seen
        self.home.mkdir(exist_ok=True)
        with self.log.open("wb") as output:
            env = _clean_environment(HOME=str(self.home))
            if data_dir_in_env:
                env["TRAINYARD_DATA_DIR"] = str(data_dir)
            self.process = subprocess.Popen([*TRAINYARD, *args], cwd=log.parent, stdout=output,
                                            stderr=subprocess.STDOUT, env=env)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with Client(self.url, timeout=2) as client:
            while True:
                assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.output()}"
                try:
                    client.ready()
                    return
                except ClientError:
                    assert time.monotonic() < deadline, f"not ready in {START_TIMEOUT} s:\n{self.output()}"
                    time.sleep(0.2)

    def wait_for_output(self, text: str) -> None:
        """Wait until the output holds ``text``; fail at once on an error line."""
        deadline = time.monotonic() + START_TIMEOUT
        while text not in self.output():
            assert "error:" not in self.output(), self.output()
            assert time.monotonic() < deadline, f"{text!r} not printed in {START_TIMEOUT} s:\n{self.output()}"
            time.sleep(0.2)

    def client(self) -> Client:
        return Client(self.url, read_token(self.settings()))

    def settings(self) -> Settings:
        return Settings.from_env({"TRAINYARD_DATA_DIR": str(self.data_dir)})

    def cli(self, *args: str) -> Result:
        """`trainyard ARGS` here, as a user on this machine: the URL given, the token from the data folder."""
        env = {"TRAINYARD_URL": self.url, "TRAINYARD_DATA_DIR": str(self.data_dir), "TRAINYARD_TOKEN": None}
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    def stop(self, signal_number: int) -> int:
        """Send ``signal_number``; the exit status, once every process ``up`` started is gone."""
        started = descendants(self.process.pid)
        assert started, "no child process to stop"
        self.process.send_signal(signal_number)
        status = self.process.wait(STOP_TIMEOUT)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in started if alive(pid)], f"left running:\n{self.output()}"
        return status

    def kill(self) -> None:
        for pid in descendants(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.kill()
        self.process.wait()


@pytest.fixture
def start(tmp_path) -> Iterator[Callable[..., Service]]:
    """``start(command, *options)``: start `trainyard up`, `api` or `worker` on the data folder ``tmp_path/data``
    (the first two on a free port)."""
    services: list[Service] = []

    def run(command: str, *options: str) -> Service:
        port = _free_port()
        data_dir = tmp_path / "data"
        args = [command, *options]
        if command in ("up", "api"):
            args += ["--port", str(port)]
        if command == "up":
            args += ["--data-dir", str(data_dir)]
        services.append(Service(args, data_dir, port, tmp_path / f"{command}.log"))
        return services[-1]

    yield run
    for service in services:
        if service.process.poll() is None:
            service.kill()


def test_up_trains_a_watched_run_exports_it_and_stops_on_ctrl_c(start, tmp_path, spec):
    up = start("up")
    up.wait_for_output("Press Ctrl-C to stop.")  # printed once /readyz answers
    assert f"Trainyard is running at {up.url}" in up.output() and f"{up.url}/docs" in up.output()
    with up.client() as client:
        assert client.ready() == {"database": "ok", "broker": "ok"}
    assert httpx.get(f"{up.url}/docs", timeout=10).status_code == 200  # the page the announcement points to
    assert not (up.home / ".gunicorn").exists()  # no gunicorn control socket, which another server would take
    token_file = token_path(up.settings())
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    # Its output is a file here, not a terminal: the login page's address and the token file, not the token.
    assert f"  dashboard: {up.url}/login (log in with the admin token" in up.output()
    assert f"  admin token: {token_file} (new;" in up.output()
    url_file = up.data_dir / "url"  # the address, for the client commands (up ran on a port of its own, not 8000)
    assert url_file.read_text() == f"{up.url}\n" and stat.S_IMODE(url_file.stat().st_mode) == 0o600
    assert f"and this address from {url_file}" in up.output()
    assert token.removeprefix(TOKEN_PREFIX) not in up.output()
    with httpx.Client(timeout=10) as browser:
        page = browser.get(f"{up.url}/login")
    assert page.status_code == 200 and 'name="token"' in page.text
    assert up.cli("token", "list").output.count("admin") == 1

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    watched = up.cli("submit", str(spec_file), "--watch")
    assert watched.exit_code == 0, watched.output + up.output()
    run_id = watched.stdout.splitlines()[0]
    assert f"run {run_id} succeeded after 30 epochs" in watched.stdout

    with up.client() as client:
        run, epochs, weights = client.run(run_id), client.epochs(run_id), client.weights(run_id)
    assert run["status"] == "succeeded" and [e["epoch"] for e in epochs] == list(range(1, 31))
    rows = list(csv.DictReader(io.StringIO(up.cli("export", run_id, "--format", "csv").stdout)))
    assert [float(row["train_loss"]) for row in rows] == [e["train_loss"] for e in epochs]
    document = json.loads(up.cli("export", run_id, "--format", "json").stdout)
    assert document["run"]["id"] == run_id and document["epochs"] == epochs
    npz = tmp_path / "weights.npz"
    assert up.cli("export", run_id, "--format", "npz", "-o", str(npz)).exit_code == 0
    with np.load(npz, allow_pickle=False) as arrays:
        assert weights["epoch"] == 30
        for index, layer in enumerate(weights["layers"], start=1):
            assert np.array_equal(arrays[f"W{index}"], np.asarray(layer["W"]))
            assert np.array_equal(arrays[f"b{index}"], np.asarray(layer["b"]))

    files = modes(up.data_dir)  # the database's -wal and -shm are there while the API and the worker run
    assert {"trainyard.db", "trainyard.db-wal", "trainyard.db-shm", "broker.db", "token", "secret_key"} <= set(files)
    assert files == {".": 0o700} | {name: 0o600 for name in files if name != "."}
    assert "readable by other users" not in up.output()  # made private, nothing to fix

    assert up.stop(signal.SIGINT) == 0
    assert token.removeprefix(TOKEN_PREFIX) not in up.output()  # nor in the api's and the worker's output


def modes(folder: Path) -> dict[str, int]:
    """The permissions of ``folder`` (as ``.``) and of everything in it, by path relative to it."""
    found = {".": stat.S_IMODE(folder.stat().st_mode)}
    return found | {str(path.relative_to(folder)): stat.S_IMODE(path.lstat().st_mode) for path in folder.rglob("*")}


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:sqlalchemy.exc.SADeprecationWarning")  # kombu's
def test_up_makes_an_open_data_folder_private_and_says_so_once(start, tmp_path):
    """A data folder made by an older Trainyard, 0755 with its files 0644 (and a connection of it still open, so the
    database's -wal and -shm are there), is made 0700 with every file 0600 on start; the terminal is told once."""
    data_dir = tmp_path / "data"
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(data_dir)})
    migrate.upgrade(settings.database_url)
    declare_queue(settings)
    (data_dir / "trainyard.db").chmod(0o644)  # before the -wal and -shm are made: SQLite gives them its mode
    with contextlib.closing(sqlite3.connect(data_dir / "trainyard.db", isolation_level=None)) as held:
        held.execute("SELECT count(*) FROM runs").fetchall()
        for path in [data_dir, *data_dir.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        before = modes(data_dir)
        assert before == {".": 0o755, "trainyard.db": 0o644, "trainyard.db-wal": 0o644, "trainyard.db-shm": 0o644,
                          "broker.db": 0o644}

        up = start("up")
        up.wait_for_output("Press Ctrl-C to stop.")
        files = modes(data_dir)
        assert files == {".": 0o700} | {name: 0o600 for name in files if name != "."}
        assert set(before) | {"token", "secret_key"} <= set(files)
        said = [line for line in up.output().splitlines() if "readable by other users" in line]
        assert said == [f"The data folder {data_dir} was readable by other users of this machine; made it yours "
                        "alone (folder 0700, files 0600): the folder, trainyard.db, trainyard.db-wal, "
                        "trainyard.db-shm, broker.db."], up.output()
        assert up.stop(signal.SIGINT) == 0

    again = start("up")
    again.wait_for_output("Press Ctrl-C to stop.")
    assert "readable by other users" not in again.output()
    assert again.stop(signal.SIGINT) == 0


def test_the_login_link_carries_the_token_in_its_fragment_never_in_its_query(tmp_path, capsys):
    """A URL's fragment never goes to a server; a query string goes into every access log on the way."""
    token = TOKEN_PREFIX + "Ab-_9" * 8 + "xyz"
    url = "http://127.0.0.1:8000"
    link = login_link(url, token)
    parts = urlsplit(link)
    assert (parts.path, parts.query) == ("/login", "") and parse_qs(parts.fragment) == {"token": [token]}
    assert token not in link.partition("#")[0]

    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(tmp_path)})
    token_path(settings).write_text(token + "\n")
    _announce(settings, url, True, terminal=True)
    shown = [line for line in capsys.readouterr().out.splitlines() if token in line]
    assert shown == [f"  dashboard (logs you in): {link}"]
    _announce(settings, url, True, terminal=False)
    printed = capsys.readouterr().out
    assert token.removeprefix(TOKEN_PREFIX) not in printed and f"  dashboard: {url}/login (" in printed


def test_up_prints_the_login_link_to_a_terminal_and_not_to_a_file_or_pipe(tmp_path):
    """`up`'s announcement as a process: on a pseudo-terminal the one-click link, through a pipe (a log) no token."""
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(tmp_path)})
    token = TOKEN_PREFIX + "Zy-_0" * 8 + "abc"
    token_path(settings).write_text(token + "\n")
    url = "http://127.0.0.1:8000"
    script = f"from trainyard.service.config import Settings; from trainyard.local import _announce; " \
             f"_announce(Settings.from_env(), {url!r}, False)"
    command, env = [sys.executable, "-P", "-c", script], _clean_environment(TRAINYARD_DATA_DIR=str(tmp_path))

    piped = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert token.removeprefix(TOKEN_PREFIX) not in piped.stdout + piped.stderr
    assert f"  dashboard: {url}/login (" in piped.stdout

    controller, terminal = pty.openpty()
    try:
        with subprocess.Popen(command, env=env, stdout=terminal, stderr=terminal) as process:
            os.close(terminal)
            output = b""
            while True:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # EIO: the process exited and closed its side of the terminal
                    break
                if not chunk:
                    break
                output += chunk
            assert process.wait(60) == 0, output
    finally:
        os.close(controller)
    assert f"  dashboard (logs you in): {login_link(url, token)}\r\n" in output.decode()


def test_up_takes_its_data_folder_from_the_env_file_like_its_children(tmp_path):
    """Without ``--data-dir``, ``up`` reads ``TRAINYARD_DATA_DIR`` where the API and the worker it starts do: the
    environment, else the current folder's ``.env``."""
    data_dir = tmp_path / "from-env"
    (tmp_path / ".env").write_text(f"TRAINYARD_DATA_DIR={data_dir}\nPOSTGRES_PASSWORD=compose-only\n")
    port = _free_port()
    up = Service(["up", "--port", str(port)], data_dir, port, tmp_path / "up.log", data_dir_in_env=False)
    try:
        up.wait_ready()
        assert token_path(up.settings()).is_file() and (data_dir / "trainyard.db").is_file()
        assert up.stop(signal.SIGTERM) == 0
    finally:
        if up.process.poll() is None:
            up.kill()


def test_up_demo_submits_the_example_runs(start):
    up = start("up", "--demo", "--workers", "2")
    up.wait_for_output("Demo: 6 runs submitted")
    with up.client() as client:
        runs = list(client.runs(tag="demo"))
    assert sorted(run["name"] for run in runs) == sorted(spec["name"] for spec in demo_specs())
    digits = [run["spec"]["optimizer"]["name"] for run in runs if run["spec"]["dataset"]["name"] == "digits"]
    assert sorted(digits) == ["adam", "rmsprop", "sgd"]
    assert up.stop(signal.SIGTERM) == 0


#: Modules a user's project folder may hold under the names of Trainyard's own parts: each breaks if imported.
SHADOWS = {
    "worker.py": "raise SystemExit('the user\'s worker.py was imported')\n",
    "service/__init__.py": "raise ImportError('the user\'s service/ was imported')\n",
    "trainer/__init__.py": "raise ImportError('the user\'s trainer/ was imported')\n",
    "migrations/__init__.py": "raise ImportError('the user\'s migrations/ was imported')\n",
    "trainyard/__init__.py": "raise ImportError('the user\'s trainyard/ was imported')\n",
}


def test_up_demo_trains_from_a_folder_whose_modules_have_trainyards_names(start, tmp_path):
    """The worker and the API never import the current folder's ``worker.py``, ``service/``, ``trainer/``,
    ``migrations/`` (or a ``trainyard/`` of its own, as in a checkout of this project)."""
    for name, code in SHADOWS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code)
    up = start("up", "--demo", "--workers", "2")  # started in tmp_path
    up.wait_for_output("Demo: 6 runs submitted")
    with up.client() as client:
        deadline = time.monotonic() + START_TIMEOUT
        while {run["status"] for run in client.runs(tag="demo")} != {"succeeded"}:
            assert time.monotonic() < deadline, [(run["name"], run["status"]) for run in client.runs(tag="demo")]
            time.sleep(0.2)
    assert "was imported" not in up.output()
    assert up.stop(signal.SIGTERM) == 0


def test_up_stops_everything_and_fails_when_a_child_dies(start):
    up = start("up")
    up.wait_ready()
    started = descendants(up.process.pid)
    api = next(pid for pid in _children()[up.process.pid] if "\0api\0" in Path(f"/proc/{pid}/cmdline").read_text())
    os.kill(api, signal.SIGKILL)
    assert up.process.wait(STOP_TIMEOUT) == 1
    assert "the api stopped unexpectedly" in up.output()
    assert not [pid for pid in started if alive(pid)]  # the worker was stopped too


def test_up_refuses_a_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = subprocess.run([*TRAINYARD, "up", "--port", port, "--data-dir", str(tmp_path / "data")],
                              capture_output=True, text=True, timeout=60, env=_clean_environment())
    assert done.returncode == 1 and f"127.0.0.1:{port} is in use" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before touching anything


def test_api_and_worker_as_separate_processes_train_a_run(start, tmp_path, spec):
    """The deployed shape (an api and a worker service), here on local mode's files."""
    migrate.upgrade(f"sqlite:///{tmp_path / 'data' / 'trainyard.db'}")
    api = start("api", "--workers", "1", "--threads", "2")
    worker = start("worker", "--concurrency", "1")
    api.wait_ready()
    with Client(api.url) as anonymous:
        assert anonymous.health() == {"status": "ok"}
    token = api.cli("token", "create", "--scope", "write").stdout.strip()
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    watched = api.cli("submit", str(spec_file), "--watch", "--token", token)
    assert watched.exit_code == 0, watched.output + worker.output()
    assert "succeeded after 30 epochs" in watched.stdout
    assert worker.stop(signal.SIGTERM) == 0
    assert api.stop(signal.SIGTERM) == 0


def test_api_and_worker_refuse_a_database_that_is_not_migrated(tmp_path):
    env = {"TRAINYARD_DATA_DIR": str(tmp_path), "TRAINYARD_DATABASE_URL": None, "TRAINYARD_BROKER_URL": None}
    for command in ("api", "worker"):
        refused = CliRunner().invoke(main, [command], env=env)
        assert refused.exit_code == 1 and "trainyard db upgrade" in refused.output


def test_the_token_file_is_made_once_and_replaced_when_it_no_longer_works(tmp_path):
    settings = Settings.from_env({"TRAINYARD_DATA_DIR": str(tmp_path)})
    migrate.upgrade(settings.database_url)
    assert ensure_token(settings) is True
    first = read_token(settings)
    assert ensure_token(settings) is False and read_token(settings) == first
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as s, s.begin():
        row = repo.verify_token(session=s, token=first)
        assert row.scope == "admin"
        repo.revoke_token(session=s, token_id=row.id)
    engine.dispose()
    assert ensure_token(settings) is True and read_token(settings) != first
    assert stat.S_IMODE(token_path(settings).stat().st_mode) == 0o600


def test_demo_specs_ship_in_the_package_and_are_valid():
    specs = [TrainSpec.model_validate(spec) for spec in demo_specs()]
    assert [spec.dataset.name for spec in specs] == ["or", "xor", "spirals", "digits", "digits", "digits"]
    assert specs[0].model.type == "perceptron"
    assert {spec.optimizer.name for spec in specs[3:]} == {"sgd", "adam", "rmsprop"}
    assert len({spec.name for spec in specs}) == 6 and all("demo" in spec.tags for spec in specs)
