"""The API under load: 50 concurrent clients for 30 s, as deployed, while workers train; errors, p50 and p99.

Starts, natively, what ``docker compose up`` starts (docker-compose.yml read
here, nothing else): the ``migrate`` service's command, then the ``api``
service's command with its ``GUNICORN_CMD_ARGS`` (gunicorn's gthread workers)
on a free port of this machine, and two ``python -m worker`` processes with
the ``worker`` service's environment, on a PostgreSQL database of the
benchmark's own (``TRAINYARD_TEST_POSTGRES_URL``, as ``benchmarks/servers.py``
finds it; or ``--database-url``, an empty database that is then left in
place) and a Redis queue of its own (``TRAINYARD_TEST_REDIS_URL``; or
``--queue``).  The token is an admin token made by ``trainyard token create``
(as ``docker compose exec api ...`` would).

Then, in order, with the same ``--clients`` (50):

1. a few seconds of warm-up (the mix below, not measured);
2. the reference, the stack's floor: ``GET /healthz`` (no database, no
   broker, no token) for ``--floor-duration`` seconds;
3. the load: for ``--duration`` seconds (30) every client, without pause,
   does one of: submit a small run (XOR, 2-8-1, 100 epochs; 1 in 9), list
   runs (``GET /api/runs``; 2 in 9), read a run (3 in 9) or its epochs
   (3 in 9), of runs trained before the load or submitted during it.

Every response must be the expected one: 201 for a submission, 200 else,
with the body it should have (the new run's id, a page of runs, the run asked
for, a list of epochs); anything else, and any connection error or timeout,
is an error (a few are kept as examples).  After the load, the benchmark waits
(at most ``--wait`` seconds) for every submitted run to finish, and counts
those that succeeded.  The API's and workers' logs are searched for
tracebacks and errors, which are shown (``log_problems`` in the JSON).

    python benchmarks/api_load.py [--duration 30] [--clients 50] [--processes 5] [--json PATH] [--record FILE]

Prints a Markdown table: per operation and overall, requests, errors, p50,
p99 and requests/s, beside the floor's.  Exit status 0 when there was no
error and every submitted run succeeded, 2 otherwise, 1 when it could not
run.  The processes it started are stopped (their process groups killed if
they linger), its database dropped and its queue's Redis keys deleted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
import servers
from record import add_option, record
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "deploy"))
from compose_kit import command_of, environment_of, interpolate, load_compose, read_env_file  # noqa: E402

#: What a client submits: the XOR MLP, 2-8-1, 100 epochs (a fraction of a second of training).
SPEC: dict[str, Any] = {
    "name": "load-xor",
    "dataset": {"name": "xor"},
    "model": {"type": "mlp", "hidden": [{"units": 8, "activation": "tanh"}]},
    "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
    "epochs": 100,
    "batch_size": 4,
    "tags": ["load"],
}

SUBMIT, LIST, RUN, EPOCHS, HEALTH = (
    "POST /api/runs", "GET /api/runs", "GET /api/runs/<id>", "GET /api/runs/<id>/epochs", "GET /healthz",
)
#: The load's mix: operation -> weight (a dashboard-like majority of reads, a steady stream of submissions).
MIX: dict[str, int] = {SUBMIT: 1, LIST: 2, RUN: 3, EPOCHS: 3}
FLOOR: dict[str, int] = {HEALTH: 1}
EXPECTED = {SUBMIT: 201, LIST: 200, RUN: 200, EPOCHS: 200, HEALTH: 200}

#: Runs trained before the load, for the clients to read from the first request on.
SEED_RUNS = 10
#: Seconds for a started process to be ready.
READY_TIMEOUT = 60.0
#: Error examples kept per client process.
EXAMPLES = 5


# ------------------------------------------------------------------------------------------------ docker-compose.yml

def compose_services() -> dict[str, Any]:
    """docker-compose.yml's services, interpolated with .env.example and the secrets filled in.

    Read with the tests' own reader of the deployment files (``tests/deploy/compose_kit.py``), so the benchmark
    runs what the compose tests check.
    """
    variables = read_env_file() | {
        "POSTGRES_PASSWORD": "unused",
        "TRAINYARD_SECRET_KEY": secrets.token_urlsafe(32),
    }
    return interpolate(load_compose()["services"], variables)


class Stack:
    """The compose file's application services run here, against this machine's PostgreSQL and Redis.

    What a container gives for free is the only change: the database and
    broker URLs name this machine's servers (the benchmark's database, its
    own queue), the API's container port is a free port, and the programs
    come from this Python's ``bin`` folder.
    """

    def __init__(self, database_url: str, redis_url: str, queue: str, folder: Path):
        self.services = compose_services()
        self.folder = folder
        self.port = servers.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.bin = str(Path(sys.executable).parent)
        base = {name: value for name, value in os.environ.items() if not name.startswith("TRAINYARD_")}
        self.base_env = base | {"PATH": os.pathsep.join([self.bin, base.get("PATH", "")])}
        self.overrides = {
            "TRAINYARD_DATABASE_URL": database_url,
            "TRAINYARD_BROKER_URL": redis_url,
            "TRAINYARD_QUEUE": queue,
            "TRAINYARD_DATA_DIR": str(folder / "data"),
        }
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def env(self, service: str) -> dict[str, str]:
        environment = environment_of(self.services[service])
        for name in ("TRAINYARD_DATABASE_URL", "TRAINYARD_BROKER_URL"):
            assert name in environment, f"docker-compose.yml's {service} has no {name}"
        return self.base_env | environment | self.overrides

    def command(self, service: str) -> list[str]:
        """The service's command, the API's container port made the free port."""
        words = command_of(self.services[service])
        if service == "api":
            container_port = str(self.services["api"]["ports"][0]).rsplit(":", 1)[1]
            words = [str(self.port) if before == "--port" and word == container_port else word
                     for before, word in zip(["", *words], words)]
            assert str(self.port) in words, f"the api's command has no --port {container_port}: {words}"
        program = shutil.which(words[0], path=self.bin) or shutil.which(words[0], path=self.base_env["PATH"])
        assert program, f"{words[0]} is not installed here"
        return [program, *words[1:]]

    def run(self, service: str, *args: str) -> str:
        """A one-shot service (``docker compose exec SERVICE ARGS`` when ``args`` are given); its stdout."""
        command = self.command(service) if not args else [shutil.which(args[0], path=self.bin) or args[0], *args[1:]]
        done = subprocess.run(command, env=self.env(service), cwd=self.folder, capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
        return done.stdout

    def start(self, service: str, command: list[str] | None = None) -> subprocess.Popen[bytes]:
        """Start a long-running service in a process group of its own, its output in ``<service>-<n>.log``."""
        name = f"{service}-{sum(s == service for s, _ in self.processes) + 1}"
        with open(self.folder / f"{name}.log", "wb") as log:
            process = subprocess.Popen(command or self.command(service), env=self.env(service), cwd=self.folder,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append((name, process))
        return process

    def log(self, process: subprocess.Popen[bytes]) -> str:
        name = next(name for name, p in self.processes if p is process)
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def problems(self) -> dict[str, list[str]]:
        """Each process's log lines that tell of a problem (a traceback, an error, a killed worker)."""
        found = {}
        for name, _ in self.processes:
            lines = (self.folder / f"{name}.log").read_text(errors="replace").splitlines()
            bad = [line for line in lines if _PROBLEM.search(line)]
            if bad:
                found[name] = bad[:10]
        return found

    def wait_until(self, process: subprocess.Popen[bytes], condition, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not condition():
            if process.poll() is not None:
                raise RuntimeError(f"{what}: exited with {process.returncode}:\n{self.log(process)[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not ready in {READY_TIMEOUT:.0f} s:\n{self.log(process)[-3000:]}")
            time.sleep(0.2)

    def close(self) -> None:
        """SIGTERM every process group (the workers first), SIGKILL what is left after 15 s."""
        for _, process in reversed(self.processes):
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, process in reversed(self.processes):
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)  # also pool processes that outlive their parent
            process.wait()


#: A log line of gunicorn, Celery or the service that tells of a problem.
_PROBLEM = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|\[ERROR\]|\[CRITICAL\]|WORKER TIMEOUT|Worker exited")


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


# ------------------------------------------------------------------------------------------------ the clients
#
# The load generator runs on the same two cores as gunicorn, PostgreSQL and the workers. 50 threads in one Python
# process would share one GIL: every response's parsing would wait for the 49 other threads, and what we measured
# would partly be the client's own queue. So the 50 clients are --processes processes (5) of --clients/--processes
# threads (10) each, every thread with its own httpx.Client (one keep-alive connection); a process's threads spend
# nearly all their time waiting on sockets, so 10 of them rarely contend for their GIL. More processes would not
# buy more cores, only more context switches. Measured here (2 cores, the floor phase, two rounds each): GET /healthz
# p50 57-69 ms, p99 248-333 ms with 1 process of 50 threads; 38-42 ms and 213-214 ms with 5 of 10; 35-43 ms and
# 201-313 ms with 10 of 5. One process is the bottleneck; five are as good as ten.


def _client_phase(task: dict[str, Any]) -> dict[str, Any]:
    """One client process's part of a phase: ``threads`` clients doing ``mix`` from ``start`` to ``end``."""
    base, token, mix, run_ids = task["base"], task["token"], task["mix"], list(task["run_ids"])
    operations, weights = list(mix), list(mix.values())
    latencies: dict[str, list[float]] = {op: [] for op in mix}
    errors: dict[str, int] = dict.fromkeys(mix, 0)
    examples: list[str] = []
    submitted: list[str] = []
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {token}"}
    ended = [task["start"]]

    def send(client: httpx.Client, op: str, rng: random.Random) -> str | None:
        """Do ``op`` once; what was wrong with the response (None: the expected status and body)."""
        run_id = rng.choice(run_ids)  # list.append is atomic: the submitted runs join the reads as they come
        if op == SUBMIT:
            response = client.post("/api/runs", json=SPEC | {"seed": rng.randrange(1_000_000)})
        elif op == LIST:
            response = client.get("/api/runs")
        elif op == HEALTH:
            response = client.get("/healthz")
        else:
            response = client.get(f"/api/runs/{run_id}" + ("/epochs" if op == EPOCHS else ""))
        if response.status_code != EXPECTED[op]:
            return f"HTTP {response.status_code}: {response.text[:300]}"
        if op == HEALTH:
            return None
        body = response.json()
        if op == SUBMIT:
            run_ids.append(body["id"])
            with lock:
                submitted.append(body["id"])
        elif op == LIST and not (isinstance(body["runs"], list) and body["runs"]):
            return f"HTTP 200 without runs: {response.text[:300]}"
        elif op == RUN and body["id"] != run_id:
            return f"HTTP 200 with run {body['id']} for run {run_id}"
        elif op == EPOCHS and not isinstance(body["epochs"], list):
            return f"HTTP 200 without epochs: {response.text[:300]}"
        return None

    def work(index: int) -> None:
        rng = random.Random(f"{task['seed']}-{index}")
        mine: dict[str, list[float]] = {op: [] for op in mix}
        failed: list[tuple[str, str]] = []
        with httpx.Client(base_url=base, headers=headers, timeout=task["timeout"]) as client:
            while time.monotonic() < task["start"]:
                time.sleep(min(0.01, max(0.0, task["start"] - time.monotonic())))
            while time.monotonic() < task["end"]:
                op = rng.choices(operations, weights)[0]
                started = time.perf_counter()
                try:
                    problem = send(client, op, rng)
                except httpx.HTTPError as exc:  # refused, reset, timed out...
                    problem = f"{type(exc).__name__}: {exc}"
                except (ValueError, LookupError, TypeError) as exc:  # not the JSON it should be
                    problem = f"a body without what it should have: {type(exc).__name__}: {exc}"
                mine[op].append((time.perf_counter() - started) * 1000)
                if problem:
                    failed.append((op, problem))
        with lock:
            for op, values in mine.items():
                latencies[op].extend(values)
            for op, problem in failed:
                errors[op] += 1
                if len(examples) < EXAMPLES:
                    examples.append(f"{op}: {problem}")
            ended[0] = max(ended[0], time.monotonic())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(task["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": errors, "examples": examples, "submitted": submitted,
            "ended": ended[0]}


def _client_ready(barrier: Any) -> None:
    barrier.wait(READY_TIMEOUT)


def run_phase(pool: Any, base: str, token: str, mix: dict[str, int], *, clients: int, processes: int,
              seconds: float, run_ids: list[str], timeout: float) -> dict[str, Any]:
    """``clients`` clients (threads spread over the pool's ``processes``) doing ``mix`` for ``seconds``."""
    start = time.monotonic() + 0.5  # every process's threads are up and waiting by then
    tasks = [
        {"base": base, "token": token, "mix": mix, "run_ids": run_ids, "seed": f"{start}-{p}", "timeout": timeout,
         "threads": clients // processes + (p < clients % processes), "start": start, "end": start + seconds}
        for p in range(processes)
    ]
    parts = pool.map(_client_phase, tasks, chunksize=1)
    wall = max(part["ended"] for part in parts) - start
    operations = {}
    for op in mix:
        values = np.array([v for part in parts for v in part["latencies"][op]])
        operations[op] = _summary(values, sum(part["errors"][op] for part in parts), wall)
    everything = np.concatenate([np.array(part["latencies"][op]) for part in parts for op in mix])
    errors = sum(o["errors"] for o in operations.values())
    return {
        "seconds": wall,
        "operations": operations,
        "overall": _summary(everything, errors, wall),
        "examples": [example for part in parts for example in part["examples"]],
        "submitted": [run_id for part in parts for run_id in part["submitted"]],
    }


def _summary(latencies: np.ndarray, errors: int, wall: float) -> dict[str, Any]:
    empty = latencies.size == 0
    return {
        "requests": int(latencies.size),
        "errors": int(errors),
        "p50_ms": None if empty else float(np.percentile(latencies, 50)),
        "p99_ms": None if empty else float(np.percentile(latencies, 99)),
        "requests_per_s": latencies.size / wall,
    }


# ------------------------------------------------------------------------------------------------ the benchmark


@contextmanager
def _database(url: str | None) -> Iterator[str]:
    if url:
        yield url
    else:
        with servers.postgres_database() as made:
            yield made


def _statuses(engine: Any, run_ids: list[str]) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, status FROM runs"))
        known = dict(rows.all())
    return {run_id: known.get(run_id, "missing") for run_id in run_ids}


def _wait_finished(engine: Any, run_ids: list[str], timeout: float) -> tuple[dict[str, str], float]:
    """Poll the database until every run has finished or ``timeout`` passes; statuses and seconds waited."""
    started = time.monotonic()
    while True:
        statuses = _statuses(engine, run_ids)
        unfinished = [s for s in statuses.values() if s in ("queued", "running")]
        if not unfinished or time.monotonic() - started > timeout:
            return statuses, time.monotonic() - started
        time.sleep(0.5)


def _cpu(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far: by the processes of each group's process groups (the API's
    gunicorn processes, the workers' Celery processes) or, for ``clients``, by those processes; and by the whole
    machine (``machine``: every core's busy time, whoever used it)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[2]), (int(fields[11]) + int(fields[12])) / ticks)  # pgrp, cpu
    used = {}
    for name, pids in groups.items():
        if name == "clients":
            used[name] = sum(stats[pid][1] for pid in pids if pid in stats)
        else:
            used[name] = sum(cpu for pgrp, cpu in stats.values() if pgrp in pids)
    times = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    used["machine"] = (sum(times) - times[3] - times[4]) / ticks  # user to steal, but idle and iowait
    return used


def _succeeded(engine: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM runs WHERE status = 'succeeded'")).scalar())


def _sessions(engine: Any) -> int | None:
    """PostgreSQL's count of the sessions ever opened on the database (the API's and workers' connections).

    None on a server without the figure (PostgreSQL before 15).
    """
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_stat_force_next_flush()"))
            query = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            return int(connection.execute(text(query)).scalar())
    except DBAPIError:
        return None


def _counts(statuses: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items()))


def _raise_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Start the stack, run the phases, wait for the runs; the results (everything stopped and removed after)."""
    redis_url = servers.redis_url()
    queue = args.queue or f"trainyard-load-{secrets.token_hex(4)}"
    with ExitStack() as cleanup:
        database_url = cleanup.enter_context(_database(args.database_url))
        broker = redis.Redis.from_url(redis_url)
        cleanup.callback(broker.close)
        cleanup.callback(broker.delete, queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="trainyard-load-")))
        stack = Stack(database_url, redis_url, queue, folder)
        cleanup.callback(stack.close)
        engine = create_engine(database_url)
        cleanup.callback(engine.dispose)

        stack.run("migrate")  # trainyard db upgrade
        api = stack.start("api")
        stack.wait_until(api, lambda: _ready(stack.base), "the api")
        worker = [sys.executable, "-P", "-m", "trainyard", "worker"]
        workers = [stack.start("worker", worker) for _ in range(args.workers)]
        for worker in workers:
            stack.wait_until(worker, lambda worker=worker: " ready." in stack.log(worker), "a worker")
        token = stack.run("api", "trainyard", "token", "create", "--scope", "admin", "--name", "load").split()[0]
        print(f"{' '.join(stack.command('api'))} (GUNICORN_CMD_ARGS={stack.env('api').get('GUNICORN_CMD_ARGS')!r}) "
              f"at {stack.base}; {args.workers} workers; queue {queue}", file=sys.stderr, flush=True)

        with httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            seeds = []
            for seed in range(SEED_RUNS):
                response = client.post("/api/runs", json=SPEC | {"name": "load-seed", "seed": seed})
                response.raise_for_status()
                seeds.append(response.json()["id"])
        statuses, _ = _wait_finished(engine, seeds, READY_TIMEOUT)
        if set(statuses.values()) != {"succeeded"}:
            raise RuntimeError(f"the seed runs did not all succeed: {statuses}")

        context = multiprocessing.get_context("spawn")  # nothing of this process's state (threads, sockets) copied
        started = context.Barrier(args.processes + 1)
        pool = context.Pool(args.processes, initializer=_client_ready, initargs=(started,))
        cleanup.callback(pool.join)
        cleanup.callback(pool.terminate)
        started.wait(READY_TIMEOUT)  # every client process has imported what it needs: the phases start on time
        phase = dict(clients=args.clients, processes=args.processes, run_ids=seeds, timeout=args.timeout)
        warmup = run_phase(pool, stack.base, token, MIX, seconds=args.warmup, **phase)
        floor = run_phase(pool, stack.base, token, FLOOR, seconds=args.floor_duration, **phase)
        groups = {"api": [api.pid], "workers": [worker.pid for worker in workers],
                  "clients": [child.pid for child in context.active_children()]}
        sessions, succeeded, cpu = _sessions(engine), _succeeded(engine), _cpu(groups)
        load = run_phase(pool, stack.base, token, MIX, seconds=args.duration, **phase)
        cpu = {name: seconds - cpu[name] for name, seconds in _cpu(groups).items()}
        after, trained = _sessions(engine), _succeeded(engine) - succeeded
        sessions = None if sessions is None or after is None else after - sessions

        submitted = warmup["submitted"] + load["submitted"]
        statuses, waited = _wait_finished(engine, submitted, args.wait)
        with engine.connect() as connection:
            epochs = connection.execute(text("SELECT count(*) FROM epochs")).scalar()
        log_problems = stack.problems()

    return {
        "setup": {
            "clients": args.clients, "client_processes": args.processes, "duration_s": args.duration,
            "floor_duration_s": args.floor_duration, "warmup_s": args.warmup, "workers": args.workers,
            "api_command": stack.command("api")[1:], "gunicorn_cmd_args": stack.env("api").get("GUNICORN_CMD_ARGS"),
            "mix": MIX, "spec": SPEC, "cores": os.cpu_count(),
        },
        "operations": load["operations"],
        "overall": load["overall"],
        "floor": floor["overall"],
        "seconds": load["seconds"],
        "errors": load["overall"]["errors"] + floor["overall"]["errors"] + warmup["overall"]["errors"],
        "error_examples": (load["examples"] + floor["examples"] + warmup["examples"])[:20],
        "warmup": {"requests": warmup["overall"]["requests"], "errors": warmup["overall"]["errors"]},
        "postgres_sessions_opened": sessions,
        "cpu_seconds": cpu,
        "log_problems": log_problems,
        "runs": {
            "submitted": len(submitted),
            "succeeded_during_load": trained,
            "succeeded": sum(status == "succeeded" for status in statuses.values()),
            "statuses": _counts(statuses),
            "waited_s": waited,
            "epochs_stored": epochs,
        },
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(value: float | None, reference: float | None) -> str:
    return "-" if value is None or not reference else f"{value / reference:.1f}x"


def print_table(results: dict[str, Any]) -> None:
    setup, floor, runs = results["setup"], results["floor"], results["runs"]
    print(
        f"gunicorn as docker-compose.yml's api ({' '.join(setup['api_command'])}; GUNICORN_CMD_ARGS "
        f"{setup['gunicorn_cmd_args']!r}), PostgreSQL + Redis on 127.0.0.1, {setup['workers']} workers training; "
        f"{setup['clients']} clients ({setup['client_processes']} processes of threads) on the same "
        f"{setup['cores']} cores for {results['seconds']:.1f} s\n"
    )
    print("| operation | requests | errors | p50 ms | p99 ms | requests/s | p50 ÷ floor | p99 ÷ floor |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = [*results["operations"].items(), ("all (the load)", results["overall"]), (f"{HEALTH} (floor)", floor)]
    for label, o in rows:
        print(f"| {label} | {o['requests']} | {o['errors']} | {_ms(o['p50_ms'])} | {_ms(o['p99_ms'])} | "
              f"{o['requests_per_s']:.0f} | {_ratio(o['p50_ms'], floor['p50_ms'])} | "
              f"{_ratio(o['p99_ms'], floor['p99_ms'])} |")
    print(f"\nfloor: {HEALTH} alone from the same {setup['clients']} clients for {setup['floor_duration_s']:g} s, "
          f"just before the load. PostgreSQL sessions opened during the load (API and workers): "
          f"{results['postgres_sessions_opened']}. Errors, all phases (warm-up included): {results['errors']}")
    cpu, seconds = results["cpu_seconds"], results["seconds"]
    ours = cpu["api"] + cpu["workers"] + cpu["clients"]
    print(f"Cores busy during the load ({setup['cores']} in all): API {cpu['api'] / seconds:.2f}, workers "
          f"{cpu['workers'] / seconds:.2f}, clients {cpu['clients'] / seconds:.2f}, everything else (PostgreSQL, "
          f"Redis, other programs) {(cpu['machine'] - ours) / seconds:.2f}; the API's CPU per request: "
          f"{cpu['api'] * 1000 / max(1, results['overall']['requests']):.1f} ms.")
    for example in results["error_examples"]:
        print(f"  {example}")
    for name, lines in results["log_problems"].items():
        print(f"The {name} log tells of problems:", *(f"  {line[:300]}" for line in lines), sep="\n")
    print(f"Runs submitted (warm-up and load): {runs['submitted']}; trained to success during the load: "
          f"{runs['succeeded_during_load']}; succeeded in all: {runs['succeeded']} ({runs['statuses']}), after "
          f"waiting {runs['waited_s']:.1f} s once the load ended.")


def record_figures(path: str | None, results: dict[str, Any]) -> None:
    setup, load, floor, runs = results["setup"], results["overall"], results["floor"], results["runs"]
    what = (f"{setup['clients']} clients x {setup['duration_s']:g} s (submit, list, read run, epochs), "
            f"gunicorn as composed, {setup['workers']} workers training")
    for name in ("p50", "p99"):
        ours, reference = load[f"{name}_ms"], floor[f"{name}_ms"]
        record(path, benchmark="API load", figure=f"{name}, {what}", unit="ms", ours=ours,
               reference=f"GET /healthz, same {setup['clients']} clients", reference_value=reference,
               ratio=ours / reference, target="reported, no errors", met=results["errors"] == 0)
    requests = load["requests"] + floor["requests"] + results["warmup"]["requests"]
    record(path, benchmark="API load", figure="errors (not the expected 2xx, or no response), the same load",
           unit="errors", ours=results["errors"], reference="requests sent", reference_value=requests,
           ratio=results["errors"] / max(1, requests), target="0", met=results["errors"] == 0)
    record(path, benchmark="API load", figure="runs submitted under the load that succeeded", unit="runs",
           ours=runs["succeeded"], reference="runs submitted", reference_value=runs["submitted"],
           ratio=runs["succeeded"] / max(1, runs["submitted"]), target="all",
           met=runs["submitted"] > 0 and runs["succeeded"] == runs["submitted"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--processes", type=int, default=5, help="client processes the clients are spread over")
    parser.add_argument("--floor-duration", type=float, help="seconds of GET /healthz (default: duration / 3, >= 5)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes training meanwhile (default 2)")
    parser.add_argument("--wait", type=float, default=180.0,
                        help="at most this many seconds for the submitted runs to finish after the load")
    parser.add_argument("--timeout", type=float, default=30.0, help="a request's timeout in seconds (an error)")
    parser.add_argument("--database-url", help="an empty PostgreSQL database to use (default: one made and dropped)")
    parser.add_argument("--queue", help="the queue's name (default: trainyard-load-<random>)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    add_option(parser)
    args = parser.parse_args(argv)
    if args.floor_duration is None:
        args.floor_duration = max(5.0, args.duration / 3)
    if not 1 <= args.processes <= args.clients:
        parser.error("--processes must be between 1 and --clients")

    signal.signal(signal.SIGTERM, _raise_on_sigterm)  # a stopped benchmark still stops its processes
    results = measure(args)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    record_figures(args.record, results)
    runs = results["runs"]
    return 0 if results["errors"] == 0 and runs["submitted"] == runs["succeeded"] > 0 else 2


if __name__ == "__main__":
    sys.exit(main())
