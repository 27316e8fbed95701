"""docker-compose.yml run without Docker: its application services' own commands and environment, as real processes.

No Docker engine runs here, so this test does what ``docker compose up``
would, natively and in the same order: it reads each service's ``command``,
``environment`` and ``healthcheck`` from the file, interpolates the variables
from a test's ``.env`` (``.env.example`` with the secrets filled in), and
changes only what a container gives for free:

- the service host names ``postgres`` and ``redis`` in URLs become this
  machine's servers, and the database is a fresh one of the test's own;
- the API's container port becomes a free port of this machine;
- ``TRAINYARD_QUEUE`` is a queue of the test's own, on both sides.

Then ``migrate`` must exit 0, the API must pass its own healthcheck, two
workers train six runs submitted over HTTP, a third joins while they train,
and one is stopped as ``docker compose stop`` would stop it (SIGTERM, SIGKILL
after ``stop_grace_period``): it must stop well within that period, handing its
run over, and every run must succeed with all its epochs.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from compose_kit import command_of, duration_seconds, environment_of, interpolate, load_compose, read_env_file
from factories import xor
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from trainyard.client import Client, ClientError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

#: Seconds for a process to get ready, and for all the runs to finish.
READY_TIMEOUT = 60
RUNS_TIMEOUT = 60

#: The runs submitted: XOR, seeds 0 to 5. 10 000 epochs take a worker seconds here: runs are still queued when
#: the third worker is ready (a Celery worker takes seconds to start), and one is in training when a worker stops.
RUNS = 6
SPEC: dict[str, Any] = xor(name="xor-deploy", epochs=10_000, tags=["deploy-test"])


# ------------------------------------------------------------------------------------------------ processes


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (a Celery worker's pool processes), from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


class Process:
    """A process of the compose service ``service``, called ``name`` (``worker-2``), its output in ``log``."""

    def __init__(self, service: str, name: str, command: list[str], env: Mapping[str, str], log: Path):
        self.service, self.name, self.log = service, name, log
        with log.open("wb") as output:
            self.popen = subprocess.Popen(command, env=dict(env), cwd=log.parent, stdout=output,
                                          stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT) -> None:
        """Wait until ``condition()``; fail with the output if the process exits or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.popen.poll() is None, f"{self.name} exited with {self.popen.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"{self.name}: not {what} in {timeout} s:\n{self.output()}"
            time.sleep(0.2)

    def stop(self, grace: float) -> float:
        """What Docker does on stop: SIGTERM, then SIGKILL after ``grace`` seconds; the seconds it took to exit."""
        started = time.monotonic()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                for pid in children(self.popen.pid):  # gunicorn's and Celery's pool processes, not to be left behind
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.popen.kill()
                self.popen.wait()
        return time.monotonic() - started


class NativeCompose:
    """The compose file's application services, interpolated with ``variables`` and run on this machine.

    Parameters
    ----------
    variables : mapping
        The ``.env`` of the deployment.
    hosts : mapping
        ``service name -> "host:port"`` of this machine's server that plays it.
    api_port : int
        The free port that stands for the API's container port.
    overrides : mapping
        Variables added to every application service's environment.
    folder : Path
        Where the processes run and log.
    """

    def __init__(self, variables: Mapping[str, str], hosts: Mapping[str, str], api_port: int,
                 overrides: Mapping[str, str], folder: Path):
        self.services = interpolate(load_compose()["services"], variables)
        self.hosts, self.api_port, self.overrides, self.folder = hosts, api_port, overrides, folder
        self.processes: list[Process] = []
        base = {name: value for name, value in os.environ.items() if not name.startswith("TRAINYARD_")}
        self.base_env = base | {"PATH": os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")])}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def grace(self, name: str) -> float:
        return duration_seconds(self.services[name].get("stop_grace_period", "10s"))

    def env(self, name: str) -> dict[str, str]:
        """The service's environment as its container sees it, with this machine's servers and the overrides."""
        service_env = {key: self._on_this_machine(value) for key, value in environment_of(self.services[name]).items()}
        return self.base_env | service_env | dict(self.overrides)

    def command(self, name: str) -> list[str]:
        return self._argv(command_of(self.services[name]))

    def healthcheck(self, name: str, *, server: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the service's healthcheck here, as Docker runs it in the container; its exit status says healthy.

        A server's own check asks the server on the container's loopback (``-h 127.0.0.1``): here it asks
        ``server`` ("host:port", default the machine's server that plays the service).
        """
        kind, *test = self.services[name]["healthcheck"]["test"]
        assert kind in ("CMD", "CMD-SHELL"), f"{name}: healthcheck {kind}"
        script = shlex.join(self._argv(test)) if kind == "CMD" else test[0]
        if name in self.hosts:
            host, port = (server or self.hosts[name]).rsplit(":", 1)
            assert "-h 127.0.0.1" in script, script
            script = script.replace("-h 127.0.0.1", f"-h {host} -p {port}")
        env = self.base_env if name in self.hosts else self.env(name)
        return subprocess.run(["sh", "-c", script], env=env, cwd=self.folder, capture_output=True, text=True,
                              timeout=10)

    def run(self, name: str, *args: str, timeout: float = READY_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run a one-shot service (or ``docker compose exec SERVICE ARGS`` when ``args`` are given) to its end."""
        command = self._argv(list(args)) if args else self.command(name)
        return subprocess.run(command, env=self.env(name), cwd=self.folder, capture_output=True, text=True,
                              timeout=timeout)

    def start(self, name: str) -> Process:
        index = sum(process.service == name for process in self.processes) + 1
        process = Process(name, f"{name}-{index}", self.command(name), self.env(name),
                          self.folder / f"{name}-{index}.log")
        self.processes.append(process)
        return process

    def close(self) -> None:
        """Stop every process (the API and workers have their grace periods, cut short to keep tests quick)."""
        for process in reversed(self.processes):
            process.stop(grace=min(10.0, self.grace(process.service)))

    def _on_this_machine(self, value: str) -> str:
        """``value`` with a URL's service host name replaced by the machine's server that plays the service."""
        if "://" not in value:
            return value
        parts = urlsplit(value)
        if parts.hostname not in self.hosts:
            return value
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{self.hosts[parts.hostname]}" if userinfo else self.hosts[parts.hostname]
        return urlunsplit(parts._replace(netloc=netloc))

    def _argv(self, words: list[str]) -> list[str]:
        """``words`` as run here: the program found on this PATH, the API's container port made the free one."""
        container_port = self.services["api"]["ports"][0].rsplit(":", 1)[1]
        words = [str(self.api_port) if previous == "--port" and word == container_port else word
                 for previous, word in zip(["", *words], words)]
        words = [word.replace(f"127.0.0.1:{container_port}/", f"127.0.0.1:{self.api_port}/") for word in words]
        program = shutil.which(words[0], path=self.base_env["PATH"])
        assert program, f"{words[0]} is not installed here"
        return [program, *words[1:]]


# ------------------------------------------------------------------------------------------------ fixtures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_server() -> Iterator[tuple[str, redis.Redis]]:
    """``("host:port", client)`` of the test Redis (``TRAINYARD_TEST_REDIS_URL``); skips when it is unreachable."""
    url = os.environ.get("TRAINYARD_TEST_REDIS_URL") or DEFAULT_REDIS_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.skip(f"Redis not reachable at {url}: {exc}")
    parts = urlsplit(url)
    yield f"{parts.hostname}:{parts.port or 6379}", client
    client.close()


@pytest.fixture
def stack(postgres_database: str, redis_server: tuple[str, redis.Redis], tmp_path: Path) -> Iterator[NativeCompose]:
    """The compose file's services on this machine: a fresh database, a queue of the test's own."""
    database = make_url(postgres_database)
    variables = read_env_file() | {
        "POSTGRES_USER": database.username,
        "POSTGRES_PASSWORD": database.password or "unused-with-trust-auth",
        "POSTGRES_DB": database.database,
        "TRAINYARD_SECRET_KEY": secrets.token_urlsafe(32),
    }
    redis_address, redis_client = redis_server
    queue = f"trainyard-deploy-{secrets.token_hex(6)}"
    compose = NativeCompose(
        variables,
        hosts={"postgres": f"{database.host}:{database.port or 5432}", "redis": redis_address},
        api_port=free_port(),
        overrides={"TRAINYARD_QUEUE": queue},
        folder=tmp_path,
    )
    try:
        yield compose
    finally:
        compose.close()
        redis_client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


# ------------------------------------------------------------------------------------------------ the test


def trained_by(engine: Engine, status: str | None = None) -> dict[str, int]:
    """Run id -> the pid of the worker pool process that trains it now or trained it last (of runs in ``status``)."""
    query = "SELECT id, worker FROM runs" + (" WHERE status = :status" if status else "")
    with engine.connect() as connection:
        rows = connection.execute(text(query), {"status": status})
        return {run_id: int(worker.split(":")[1]) for run_id, worker in rows if worker}  # host:pid:random:claim


def test_the_compose_services_run_natively_train_runs_over_http_and_scale_workers(stack, postgres_database):
    migrate = stack.run("migrate")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    assert stack.healthcheck("api").returncode != 0  # unhealthy while it is not serving
    api = stack.start("api")
    with Client(stack.api_url, timeout=2) as probe:
        api.wait_for(lambda: _ready(probe), "ready")
    healthcheck = stack.healthcheck("api")
    assert healthcheck.returncode == 0, healthcheck.stderr

    workers = [stack.start("worker"), stack.start("worker")]
    for worker in workers:
        worker.wait_for(lambda worker=worker: " ready." in worker.output(), "ready")

    created = stack.run("api", "trainyard", "token", "create", "--scope", "admin")  # docker compose exec api ...
    assert created.returncode == 0, created.stderr
    token = created.stdout.splitlines()[0]

    # The dashboard: log in with the token once, and every page is served, by whichever gunicorn process.
    with httpx.Client(base_url=stack.api_url, timeout=10) as browser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/login").text).group(1)
        assert browser.post("/login", data={"token": token, "csrf": csrf}).status_code == 303
        pages = [browser.get("/runs") for _ in range(20)]
    assert [page.status_code for page in pages] == [200] * 20

    engine = create_engine(postgres_database)

    def training_on(worker: Process) -> set[str]:
        pool = children(worker.popen.pid)
        return {run_id for run_id, pid in trained_by(engine, "running").items() if pid in pool}

    try:
        with Client(stack.api_url, token, timeout=10) as client:
            run_ids = [client.submit(SPEC | {"seed": seed})["id"] for seed in range(RUNS)]

            workers[0].wait_for(lambda: training_on(workers[0]), "training")
            workers.append(stack.start("worker"))  # docker compose up -d --scale worker=3
            workers[2].wait_for(lambda: training_on(workers[2]), "training")

            # docker compose up -d --scale worker=2: one of the first two is stopped while it trains a run.
            deadline = time.monotonic() + READY_TIMEOUT
            while not (busy := [worker for worker in workers[:2] if training_on(worker)]):
                assert time.monotonic() < deadline, "neither of the first two workers is training"
                time.sleep(0.1)
            stopping = busy[0]
            stopped_pool, handed_over = children(stopping.popen.pid), training_on(stopping)
            grace = stack.grace("worker")
            seconds = stopping.stop(grace)
            assert stopping.popen.returncode == 0, f"killed after {seconds:.1f} s:\n{stopping.output()}"
            assert seconds < grace / 4, f"its soft shutdown took {seconds:.1f} s of {grace} s"

            deadline = time.monotonic() + RUNS_TIMEOUT
            while {client.run(run_id)["status"] for run_id in run_ids} != {"succeeded"}:
                statuses = {run_id: client.run(run_id)["status"] for run_id in run_ids}
                assert "failed" not in statuses.values(), statuses
                assert time.monotonic() < deadline, f"not done in {RUNS_TIMEOUT} s: {statuses}"
                time.sleep(0.5)

            for run_id in run_ids:
                run, epochs = client.run(run_id), client.epochs(run_id, fields=["train_loss"])
                assert run["epochs_done"] == run["epochs_total"] == SPEC["epochs"], run
                assert [epoch["epoch"] for epoch in epochs] == list(range(1, SPEC["epochs"] + 1)), run_id
            # The stopped worker's run went back to the queue and another worker finished it (unless it had
            # finished its last epoch before the SIGTERM arrived), on the same attempt: a hand-over costs none.
            finished_by = trained_by(engine)
            resumed = {run_id for run_id in handed_over if finished_by[run_id] not in stopped_pool}
            assert all(client.run(run_id)["attempts"] == 1 for run_id in resumed), resumed
    finally:
        engine.dispose()


def _ready(client: Client) -> bool:
    try:
        client.ready()
    except ClientError:
        return False
    return True


@pytest.mark.parametrize("server", ["postgres", "redis"])
def test_the_servers_healthchecks_pass_on_a_live_server_and_fail_on_a_dead_one(stack, server):
    assert stack.healthcheck(server).returncode == 0, stack.healthcheck(server)
    dead = stack.healthcheck(server, server=f"127.0.0.1:{free_port()}")
    assert dead.returncode != 0, dead
