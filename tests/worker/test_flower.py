"""Flower, Celery's monitor, sees a real worker and its training runs on Redis.

Flower runs as docker-compose.yml runs it (``celery --broker=URL flower``, with
basic auth from ``FLOWER_BASIC_AUTH``), before the worker: it learns of
workers from their heartbeats and of tasks from their events, which it does
not find later.  The worker is ``trainyard worker`` on the redis stack
(PostgreSQL and a queue of the test's own).  Flower hears every worker that
uses the same Redis database, so the test looks for its own worker and run.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from factories import XOR, spec_of
from worker_kit import Stack, redis_stack, wait_for

from trainyard.service.queue import TRAIN_TASK

#: Flower's banner, with the port it listens on (``--port=0`` picks a free one).
BANNER = re.compile(r"Visit me at http://127\.0\.0\.1:(\d+)")


class Flower:
    """``celery --broker=URL flower`` on a free port of 127.0.0.1, with basic auth, logging to a file."""

    def __init__(self, broker_url: str, folder: Path):
        self.credentials = ("trainyard", secrets.token_urlsafe(12))
        self.log = folder / "flower.log"
        env = {name: value for name, value in os.environ.items() if not name.startswith(("FLOWER_", "CELERY_"))}
        env["FLOWER_BASIC_AUTH"] = ":".join(self.credentials)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", f"--broker={broker_url}", "flower", "--port=0",
                 "--address=127.0.0.1"],
                env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT,
            )
        try:
            port = wait_for(self._port, 30, "Flower's banner")
            self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
            wait_for(self._healthy, 30, "Flower's /healthcheck")
        except BaseException:
            self.stop()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def _port(self) -> int | None:
        assert self.process.poll() is None, f"Flower exited:\n{self.output()}"
        match = BANNER.search(self.output())
        return int(match[1]) if match else None

    def _healthy(self) -> bool:
        try:
            return self.http.get("/healthcheck").text == "OK"  # open without credentials
        except httpx.TransportError:
            return False

    def api(self, path: str, **params: str) -> Any:
        response = self.http.get(path, params=params, auth=self.credentials)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if hasattr(self, "http"):
            self.http.close()


@pytest.fixture
def stack(tmp_path: Path, postgres_database: str, redis_url: str, redis_client: redis.Redis) -> Iterator[Stack]:
    """The redis stack on a queue of the test's own (its keys deleted after the test)."""
    queue = f"trainyard-test-{secrets.token_hex(6)}"
    stack = redis_stack(tmp_path, queue, 2.0, postgres_database, redis_url)
    yield stack
    stack.close()
    redis_client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


@pytest.fixture
def flower(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> Iterator[Flower]:
    flower = Flower(redis_url, tmp_path)
    yield flower
    flower.stop()


def test_flower_shows_the_worker_online_and_its_training_run_succeeded(stack: Stack, flower: Flower):
    worker = stack.start_worker()
    hostname = f"trainyard-{worker.process.pid}@{socket.gethostname()}"  # the name `trainyard worker` gives
    wait_for(lambda: flower.api("/api/workers", status="1").get(hostname) is True, 30, "the worker online in Flower")

    run_id = stack.submit(spec_of(XOR, epochs=50))
    assert stack.wait_finished(run_id).status == "succeeded"

    def flowers_task() -> dict[str, Any] | None:
        tasks = flower.api("/api/tasks", taskname=TRAIN_TASK, workername=hostname)
        found = [task for task in tasks.values() if task["args"] == repr([run_id])]
        return found[0] if found and found[0]["state"] == "SUCCESS" else None

    task = wait_for(flowers_task, 30, f"Flower to show the task of run {run_id} succeeded")
    assert (task["name"], task["worker"], task["routing_key"], task["result"]) == (
        TRAIN_TASK, hostname, stack.settings.queue, repr("succeeded"))
    # Sent by the API's queue (its event may reach Flower after the worker's first: no order between the two
    # processes); received, started and succeeded by the worker, in that order.
    assert task["sent"] is not None and task["received"] <= task["started"] <= task["succeeded"]


def test_flower_refuses_its_api_without_the_credentials(flower: Flower):
    assert flower.http.get("/api/workers").status_code == 401
    assert flower.http.get("/api/workers", auth=("trainyard", "wrong")).status_code == 401
    assert flower.http.get("/api/workers", auth=flower.credentials).status_code == 200
