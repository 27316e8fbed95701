"""Fixtures of the worker tests: specs, a database session factory, real ``python -m trainyard.worker`` processes.

Worker processes are real Celery workers started as subprocesses (no eager
mode), each in its own process group so a test can SIGKILL the whole worker;
teardown always kills what a test started.  Two stacks: ``local`` (the
SQLAlchemy transport and SQLite in a temporary folder) and ``redis`` (Redis
and a PostgreSQL database made for the stack), each on a queue of its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from factories import postgres_database
from worker_kit import Stack, local_stack, redis_stack

# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="module", params=["local", "redis"])
def stack_factory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        Callable[..., Stack]]:
    """``make(lease=2.0)``: a fresh stack of the module's kind (``local`` or ``redis``), on a queue of its own.

    Each stack has a database of its own (a stack is one deployment: its
    workers' reconcilers send the runs of their database to their queue).
    Every stack and its worker processes are torn down after the module; on
    Redis the queues' keys are deleted.
    """
    stacks: list[Stack] = []
    kind = request.param
    databases = ExitStack()
    if kind == "redis":
        admin = request.getfixturevalue("postgres_admin")
        redis_url = request.getfixturevalue("redis_url")
        client = request.getfixturevalue("redis_client")

    def make(lease: float = 2.0) -> Stack:
        folder = tmp_path_factory.mktemp(f"worker-{kind}")
        queue = f"trainyard-test-{secrets.token_hex(6)}"
        if kind == "local":
            stack = local_stack(folder, queue, lease)
        else:
            stack = redis_stack(folder, queue, lease, databases.enter_context(postgres_database(admin)), redis_url)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()
        if kind == "redis":
            queue = stack.settings.queue
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
            # Messages of SIGKILLed workers wait in kombu's global "unacked" hash for the visibility timeout.
            tags = [tag for tag, payload in client.hgetall("unacked").items() if queue.encode() in payload]
            if tags:
                client.hdel("unacked", *tags)
                client.zrem("unacked_index", *tags)
    databases.close()
