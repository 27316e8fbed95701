"""Local mode: ``trainyard up`` runs the whole service on one machine, with no servers to install.

:func:`up` supervises two child processes built from the same settings:

- a Celery worker (``trainyard worker``), which trains the runs;
- the API under gunicorn (``trainyard api``): one process with a few
  threads (``gthread``).  One process because local mode's database is a
  SQLite file, which takes one writer at a time; threads so a page that
  polls or streams does not hold up the other requests.

Before starting them it makes the data folder readable by its owner alone
(0700, its files 0600; a folder left open by an older Trainyard is fixed, and
the terminal told), brings the database to the code's schema and makes
sure ``<data dir>/token`` holds a working admin token (mode 0600), which the
``trainyard`` command on the same machine picks up.  The children run in
process groups of their own, so Ctrl-C in the terminal reaches only the
supervisor, which then stops them in order and waits for them: a worker gets
the time its soft shutdown needs to checkpoint and requeue a run.  If a child
dies on its own, the others are stopped too and ``up`` exits non-zero.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from trainyard.client import TOKEN_FILE, URL_FILE, Client, ClientError, first_line
from trainyard.service.auth import SECRET_KEY_FILE
from trainyard.service.celery_config import LOCAL_BROKER_PREFIX, declare_queue
from trainyard.service.config import Settings
from trainyard.service.server import bind_address
from trainyard.service.storage import migrate, repo
from trainyard.service.storage.db import make_engine, make_sessionmaker
from trainyard.service.storage.files import SQLITE_SUFFIXES, make_private, make_private_folder, sqlite_file

#: gunicorn threads of the API process in local mode.
LOCAL_THREADS = 8

#: Seconds to wait for the API's ``/readyz`` after starting it.
READY_TIMEOUT = 60.0

#: Seconds a child may take to stop after SIGTERM before it is killed: longer than the worker's soft shutdown.
STOP_TIMEOUT = 30.0

#: Seconds gunicorn waits for requests in flight when stopping (its default, 30, would hold Ctrl-C up).
GRACEFUL_TIMEOUT = 5

#: The example runs ``up --demo`` submits, in order: package data of ``trainyard.demo``.
DEMO_SPECS = (
    "or-perceptron.json",
    "xor-mlp.json",
    "spirals-mlp.json",
    "digits-sgd-momentum.json",
    "digits-adam.json",
    "digits-rmsprop.json",
)


def api_command(host: str, port: int, *, workers: int, threads: int, graceful_timeout: int) -> list[str]:
    """The command line of ``trainyard api`` (gunicorn, :mod:`trainyard.service.server`) with these options.

    ``-P`` keeps the current folder off ``sys.path``: a user's own ``trainyard/`` there is never imported.
    """
    return [sys.executable, "-P", "-m", "trainyard", "api", "--host", host, "--port", str(port),
            "--workers", str(workers), "--threads", str(threads), "--graceful-timeout", str(graceful_timeout)]


def worker_command(concurrency: int) -> list[str]:
    """The command line of ``trainyard worker`` (one Celery worker) with ``concurrency`` training processes."""
    return [sys.executable, "-P", "-m", "trainyard", "worker", "--concurrency", str(concurrency)]


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port``.

    Checked before starting: gunicorn would fail to bind, but only after
    retrying for seconds, and another Trainyard there would answer our
    readiness check as if it were ours.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does: a closing socket is no use
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def client_address(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server bound to ``host`` (any-address binds: loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{bind_address(shown, port)}"


# ----------------------------------------------------------------------------- the data folder


def data_files(settings: Settings) -> list[str]:
    """The names of the files Trainyard keeps in the data folder: the admin token, the address, the dashboard's
    secret key, and
    the SQLite database and broker (with their ``-wal``, ``-shm`` and ``-journal``) where the settings put them."""
    names = [TOKEN_FILE, URL_FILE, SECRET_KEY_FILE]
    urls = [settings.database_url]
    if settings.broker_url.startswith(LOCAL_BROKER_PREFIX):
        urls.append(settings.broker_url.removeprefix(LOCAL_BROKER_PREFIX))
    for url in urls:
        path = sqlite_file(url)
        if path is not None and path.parent.resolve() == settings.data_dir.resolve():
            names += [path.name + suffix for suffix in SQLITE_SUFFIXES]
    return names


def make_data_dir_private(settings: Settings) -> None:
    """Make the data folder (0700) and Trainyard's files in it (0600) readable by their owner alone.

    A new folder is made so; one made by an older Trainyard, with the usual
    0755 and 0644, is changed, and the terminal told once which paths were.
    """
    folder = settings.data_dir
    make_private_folder(folder)
    done = make_private(folder, data_files(settings))
    if done.changed:
        shown = ", ".join("the folder" if path == folder else path.name for path in done.changed)
        click.echo(f"The data folder {folder} was readable by other users of this machine; made it yours alone "
                   f"(folder 0700, files 0600): {shown}.")
    for path, reason in done.refused:
        click.echo(f"warning: {path} stays readable by other users of this machine: {reason}", err=True)


# ----------------------------------------------------------------------------- the token


def token_path(settings: Settings) -> Path:
    """Where ``up`` keeps its admin token: ``<data dir>/token``."""
    return settings.data_dir / TOKEN_FILE


def read_token(settings: Settings) -> str | None:
    """The token in ``<data dir>/token``, or None when there is no such file."""
    return first_line(token_path(settings))


def url_path(settings: Settings) -> Path:
    """Where ``up`` writes the address it serves: ``<data dir>/url``."""
    return settings.data_dir / URL_FILE


def read_url(settings: Settings) -> str | None:
    """The address in ``<data dir>/url``, or None when there is no such file."""
    return first_line(url_path(settings))


def ensure_token(settings: Settings) -> bool:
    """Make sure ``<data dir>/token`` holds an active admin token; True if a new one was made.

    A token file left over from another database (one deleted, say) or
    holding a revoked token is replaced.  The file is written with mode 0600
    before the token's row commits, so a token is never stored without its file.
    """
    current = read_token(settings)
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            if current is not None and repo.verify_token(session=session, token=current) is not None:
                return False
            plaintext, _ = repo.create_token(session=session, scope="admin", name="trainyard up")
            _write_private(token_path(settings), plaintext + "\n")
    finally:
        engine.dispose()
    return True


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner alone, atomically (a temporary file, then a rename)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, path)


# ----------------------------------------------------------------------------- children


@dataclass
class Child:
    """A supervised process."""

    name: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, name: str, command: Sequence[str], env: Mapping[str, str]) -> Child:
        """Start ``command`` in a process group of its own (so the terminal's Ctrl-C goes to the supervisor only)."""
        return cls(name, subprocess.Popen(list(command), env=dict(env), process_group=0))

    def exited(self) -> int | None:
        return self.process.poll()

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()

    def wait(self, deadline: float) -> int:
        """Wait for the process until ``deadline`` (a ``time.monotonic()``), then kill it; its exit status.

        Whatever is left of its process group afterwards (pool processes of a
        worker that died) is killed too, so nothing outlives ``up``.
        """
        try:
            status = self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            click.echo(f"{self.name} did not stop within {STOP_TIMEOUT:.0f} s: killing it", err=True)
            self._kill_group()
            status = self.process.wait()
        self._kill_group()
        return status

    def _kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def stop(children: Sequence[Child]) -> dict[str, int]:
    """SIGTERM to every child, then wait for each (killing those that take too long); their exit statuses."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    return {child.name: child.wait(deadline) for child in children}


@contextmanager
def stop_requested() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (the previous handlers come back after it)."""
    event = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda *_: event.set()) for number in signals}
    try:
        yield event
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _first_exit(children: Sequence[Child]) -> Child | None:
    return next((child for child in children if child.exited() is not None), None)


def _wait_ready(client: Client, children: Sequence[Child], stopping: threading.Event) -> Child | None:
    """Poll ``/readyz`` until it answers 200; the child that died meanwhile, if one did.

    Raises ``TimeoutError`` after :data:`READY_TIMEOUT` seconds.
    """
    deadline = time.monotonic() + READY_TIMEOUT
    while not stopping.is_set():
        dead = _first_exit(children)
        if dead is not None:
            return dead
        try:
            client.ready()
            return None
        except ClientError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API was not ready within {READY_TIMEOUT:.0f} s: {exc}") from exc
        stopping.wait(0.2)
    return None


# ----------------------------------------------------------------------------- demo


def demo_specs() -> list[dict[str, Any]]:
    """The demo's job specs (shipped inside the package, so they work from an installed wheel)."""
    folder = resources.files("trainyard") / "demo"
    return [json.loads((folder / name).read_text(encoding="utf-8")) for name in DEMO_SPECS]


def submit_demo(client: Client) -> list[dict[str, Any]]:
    """Submit the demo's runs; the created runs."""
    return [client.submit(spec) for spec in demo_specs()]


# ----------------------------------------------------------------------------- up


def up(settings: Settings, *, host: str, port: int, workers: int, demo: bool = False) -> int:
    """Run the service on this machine until SIGINT or SIGTERM; the exit status (non-zero if a child failed).

    Parameters
    ----------
    settings : Settings
        The configuration: the data folder, and the database and broker
        (local files in the data folder unless the environment names servers).
    host, port : str, int
        Where the API listens.
    workers : int
        Training processes of the worker (its Celery concurrency).
    demo : bool
        Submit the example runs of :data:`DEMO_SPECS` once the API is ready.
    """
    if port_in_use(host, port):
        click.echo(f"error: {host}:{port} is in use (another trainyard up?); choose another port with --port", err=True)
        return 1
    make_data_dir_private(settings)
    migrate.upgrade(settings.database_url)
    declare_queue(settings)  # before the API and the worker can race to create it on the local broker
    made = ensure_token(settings)
    url = client_address(host, port)
    env = {**os.environ, "TRAINYARD_DATA_DIR": str(settings.data_dir)}
    with stop_requested() as stopping, Client(url, read_token(settings)) as client:
        children = [
            Child.start("worker", worker_command(workers), env),
            Child.start("api", api_command(host, port, workers=1, threads=LOCAL_THREADS,
                                           graceful_timeout=GRACEFUL_TIMEOUT), env),
        ]
        try:
            dead = _wait_ready(client, children, stopping)
        except TimeoutError as exc:
            click.echo(f"error: {exc}", err=True)
            stop(children)
            return 1
        if dead is None and not stopping.is_set():
            _write_private(url_path(settings), url + "\n")
            _announce(settings, url, made)
            if demo:
                _demo(client)
            while not stopping.wait(0.5):
                dead = _first_exit(children)
                if dead is not None:
                    break
        return _shut_down(children, dead)


def login_link(url: str, token: str) -> str:
    """The dashboard's one-click login: ``<url>/login#token=<token>``.

    The token is in the URL's fragment, which a browser never sends to a
    server: no access log, proxy log or ``Referer`` header gets it.  The login
    page's script (``login.js``) clears it from the address bar and posts it
    through the login form.  (A token in the query string, ``/login?token=``,
    is refused: servers log query strings.)
    """
    return f"{url}/login#{urlencode({'token': token})}"


def _announce(settings: Settings, url: str, made: bool, *, terminal: bool | None = None) -> None:
    """Print where the service is; the one-click login link only when ``terminal`` (default: stdout is a tty)."""
    path = token_path(settings)
    if terminal is None:
        terminal = bool(getattr(sys.stdout, "isatty", lambda: False)())
    click.echo(f"Trainyard is running at {url}")
    if not settings.auth:
        click.echo(f"  dashboard: {url}/")
    elif terminal:
        click.echo(f"  dashboard (logs you in): {login_link(url, read_token(settings) or '')}")
    else:
        # The link holds the admin token. A terminal is read by a person (and kept only in its scrollback); any
        # other stdout (nohup, systemd's journal, a CI log, `| tee up.log`) is a log, and tokens never go into logs.
        # So there the address is printed, and the token file's path below: paste the token into the login page.
        click.echo(f"  dashboard: {url}/login (log in with the admin token in the file below)")
    click.echo(f"  API and its interactive documentation: {url}/docs")
    click.echo(f"  admin token: {path} ({'new' if made else 'kept'}; the trainyard command here reads it,")
    click.echo(f"  and this address from {url_path(settings)}: `trainyard runs` needs no --url or --token)")
    click.echo("Press Ctrl-C to stop.")


def _demo(client: Client) -> None:
    try:
        runs = submit_demo(client)
    except ClientError as exc:
        click.echo(f"error: the demo runs could not be submitted: {exc}", err=True)
        return
    click.echo(f"Demo: {len(runs)} runs submitted ({', '.join(run['name'] for run in runs)}); "
               "see them with `trainyard runs`.")


def _shut_down(children: Sequence[Child], dead: Child | None) -> int:
    """Stop every child; 1 if ``dead`` stopped before it was asked to, else 0."""
    if dead is not None:
        click.echo(f"error: the {dead.name} stopped unexpectedly (exit status {dead.exited()}); stopping", err=True)
    else:
        click.echo("Stopping...", err=True)
    stop(children)
    return 0 if dead is None else 1
