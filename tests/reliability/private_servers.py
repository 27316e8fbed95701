"""PostgreSQL and Redis servers of a test's own, which it may stop and start again.

The fault tests stop the database or the broker under a running deployment;
they must never do that to the machine's shared servers, so each starts a
private instance on a free port, in a temporary folder, from the same
binaries (``initdb``/``postgres`` and ``redis-server``).  A stopped server is
started again on the same port with the same data folder, as a restarted
server would be.  Neither keeps anything durable beyond what the test needs:
PostgreSQL runs with ``fsync=off``, and Redis keeps nothing on disk, so a
restarted Redis comes back empty (every message in it is lost).

PostgreSQL refuses to run as root; when the tests run as root the server
runs as the ``postgres`` system user, which Debian's packages create.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis


class ServerUnavailable(RuntimeError):
    """The binaries (or the user) a private server needs are not on this machine."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class PrivateServer:
    """A server process in a process group of its own, logging to a file in its folder."""

    process: subprocess.Popen[bytes] | None = None
    folder: Path
    name: str

    def _popen(self, command: list[str], **kwargs) -> None:
        with open(self.folder / f"{self.name}.log", "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )

    def log(self) -> str:
        return (self.folder / f"{self.name}.log").read_text(errors="replace")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30) -> None:
        """Stop the server (``SIGINT``: PostgreSQL's fast shutdown, closing every connection)."""
        if self.running:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _postgres_bin() -> Path:
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise ServerUnavailable("PostgreSQL's server binaries (initdb, postgres) are not installed")


class PrivatePostgres(PrivateServer):
    """A PostgreSQL cluster of the test's own on 127.0.0.1:``port`` (trust auth, user ``postgres``)."""

    name = "postgres"

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            try:
                self.user = pwd.getpwnam("postgres").pw_name
            except KeyError:
                raise ServerUnavailable("running as root without a 'postgres' user to run PostgreSQL as") from None
        self.folder = Path(tempfile.mkdtemp(prefix="trainyard-pg-"))
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "--no-sync", "--encoding=UTF8", "--locale=C"],
            check=True, capture_output=True, user=self.user,
        )

    def start(self, timeout: float = 30) -> None:
        """Start the server (again) and wait until it accepts connections."""
        self._popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.folder),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=100"],
            user=self.user,
        )
        _wait(self.accepts, timeout, f"the private PostgreSQL on port {self.port}:\n{self.log()}")

    def accepts(self) -> bool:
        try:
            psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                            connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self, name: str) -> str:
        """Create the database ``name``; its SQLAlchemy URL."""
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"


class PrivateRedis(PrivateServer):
    """A Redis of the test's own on 127.0.0.1:``port`` that keeps nothing on disk."""

    name = "redis"

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise ServerUnavailable("redis-server is not installed")
        self.folder = Path(tempfile.mkdtemp(prefix="trainyard-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> None:
        """Start the server (again, empty) and wait until it answers."""
        self._popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)]
        )
        _wait(self.accepts, timeout, f"the private Redis on port {self.port}:\n{self.log()}")

    def accepts(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)
