"""Fixtures of the reliability suite: deployments (PostgreSQL + Redis + worker processes) to break.

Each test gets a deployment of its own: a database and a queue nobody else
uses, real ``python -m trainyard.worker`` processes, and the API where the test talks to
it.  A test that stops the database or the broker gets a private server
(:mod:`private_servers`) for it; the machine's shared servers are never
stopped.  Everything a test starts is killed and removed after it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from private_servers import PrivatePostgres, PrivateRedis, PrivateServer, ServerUnavailable, free_port
from worker_kit import Stack, redis_stack, wait_for


def _running(server_class: type[PrivateServer]) -> Iterator[PrivateServer]:
    """A started private server of ``server_class``, closed (stopped, its folder removed) afterwards; skips with
    the reason on a machine without its binaries."""
    try:
        server = server_class()
    except ServerUnavailable as exc:
        pytest.skip(f"no private {server_class.name}: {exc}")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running PostgreSQL of this test's own, which it may stop and start."""
    yield from _running(PrivatePostgres)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A running Redis of this test's own (keeping nothing on disk), which it may stop and start."""
    yield from _running(PrivateRedis)


def delete_queue_keys(client: redis.Redis, queue: str) -> None:
    """Remove a queue's keys from a shared Redis, and the unacked messages of its killed workers."""
    client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    tags = [tag for tag, payload in client.hgetall("unacked").items() if queue.encode() in payload]
    if tags:
        client.hdel("unacked", *tags)
        client.zrem("unacked_index", *tags)


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """``make(database_url, redis_url, lease=2.0, shared=None)``: a deployment on those servers, on a queue of
    its own; torn down after the test, its worker processes killed, and its keys deleted from ``shared`` (a
    client of the machine's Redis, when ``redis_url`` is that one)."""
    stacks: list[tuple[Stack, redis.Redis | None]] = []

    def make(database_url: str, redis_url: str, lease: float = 2.0, shared: redis.Redis | None = None) -> Stack:
        folder = tmp_path / f"stack-{len(stacks)}"
        folder.mkdir()
        stack = redis_stack(folder, f"trainyard-test-{secrets.token_hex(6)}", lease, database_url, redis_url)
        stacks.append((stack, shared))
        return stack

    yield make
    for stack, shared in stacks:
        stack.close()
        if shared is not None:
            delete_queue_keys(shared, stack.settings.queue)


@pytest.fixture
def shared_stack(make_stack, postgres_database: str, redis_url: str, redis_client: redis.Redis) -> Stack:
    """A deployment on the machine's shared PostgreSQL (a database of its own) and Redis (a queue of its own)."""
    return make_stack(postgres_database, redis_url, shared=redis_client)


class ApiProcess:
    """``trainyard api`` (gunicorn) on a free port, in a process group of its own, logging to a file."""

    def __init__(self, env: dict[str, str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.clients: list[httpx.Client] = []
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "trainyard", "api",
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1", "--threads", "4"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until ``/healthz`` answers."""

        def answers() -> bool:
            assert self.process.poll() is None, f"the API exited:\n{self.output()}"
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, timeout, "the API to answer", interval=0.1)

    def client(self, token: str) -> httpx.Client:
        """An HTTP client of this API with ``token``; closed when the API stops."""
        client = httpx.Client(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {token}"})
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@pytest.fixture
def start_api() -> Iterator[Callable[[Stack], ApiProcess]]:
    """``start_api(stack)``: the API of ``stack`` under gunicorn; stopped after the test."""
    started: list[ApiProcess] = []

    def start(stack: Stack) -> ApiProcess:
        api = ApiProcess(stack.env(), stack.folder / f"api-{len(started)}.log")
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()
