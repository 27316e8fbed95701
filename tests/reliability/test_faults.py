"""Faults: workers killed at random, the broker and the database stopped and started under running work.

Each test runs a deployment of its own (PostgreSQL, Redis, two ``python -m
worker`` processes); a server the test stops is a private one
(:mod:`private_servers`).  What must hold every time: every run ends as it
should, with each epoch stored exactly once, and its final weights equal, bit
for bit, those of an uninterrupted ``fit`` of the same spec in this process.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from sqlalchemy import func, select
from worker_kit import (
    DIGITS,
    XOR,
    Stack,
    WorkerProcess,
    assert_bit_identical_to_fit,
    assert_one_row_per_epoch,
    spec_of,
    wait_for,
)

from service.storage import repo
from service.storage.models import Run


def statuses(stack: Stack, run_ids: list[str]) -> dict[str, int]:
    with stack.Session() as s:
        rows = s.execute(select(Run.status, func.count()).where(Run.id.in_(run_ids)).group_by(Run.status)).all()
    return dict(rows)


def wait_all_finished(stack: Stack, run_ids: list[str], timeout: float) -> list[Any]:
    wait_for(
        lambda: all(stack.run(run_id).finished for run_id in run_ids), timeout,
        f"{len(run_ids)} runs to finish (now {statuses(stack, run_ids)})", interval=0.2,
    )
    return [stack.run(run_id) for run_id in run_ids]


def holder(stack: Stack, run: Run) -> WorkerProcess | None:
    """The worker process whose pool process holds ``run``'s lease (names are ``host:pid:random``)."""
    try:
        group = os.getpgid(int(run.worker.split(":")[1]))
    except (AttributeError, IndexError, ValueError, ProcessLookupError):
        return None
    return next((w for w in stack.workers if w.process.pid == group and w.process.poll() is None), None)


# --------------------------------------------------------------------------- 1. workers killed at random


def test_workers_sigkilled_at_random_moments_lose_nothing(shared_stack: Stack):
    stack = shared_stack
    specs = [spec_of(DIGITS, name=f"digits-{seed}", seed=seed, epochs=150) for seed in range(10)]
    run_ids = [stack.submit(spec) for spec in specs]
    stack.start_worker()
    stack.start_worker()
    rng = random.Random(20261128)
    kills = interrupted = 0
    while kills < 6:
        # A moment at random in some run's training: after it has flushed, 0 to 0.8 s later.
        training = [run for run_id in run_ids if (run := stack.run(run_id)).status == "running" and run.epochs_done]
        victim = holder(stack, rng.choice(training)) if training else None
        if victim is None:
            if all(stack.run(run_id).finished for run_id in run_ids):
                break
            time.sleep(0.05)
            continue
        time.sleep(rng.uniform(0.0, 0.8))
        held = [run for run_id in run_ids if (run := stack.run(run_id)).status == "running" and
                holder(stack, run) is victim]
        victim.kill()
        kills += 1
        interrupted += bool(held)
        stack.workers.remove(victim)
        stack.start_worker()  # the machine comes back
    runs = wait_all_finished(stack, run_ids, timeout=180)
    assert interrupted >= 3, f"only {interrupted} of {kills} kills hit a run while it trained"
    assert [(run.status, run.error) for run in runs] == [("succeeded", None)] * 10
    assert sum(run.attempts for run in runs) >= 10 + interrupted  # each interrupted run was claimed again
    for run_id, spec in zip(run_ids, specs):
        assert_one_row_per_epoch(stack, run_id, 150)
        assert_bit_identical_to_fit(stack, run_id, spec)


# --------------------------------------------------------------------------- 2. the broker restarted empty


def test_runs_survive_a_broker_restart_that_loses_every_message(make_stack, postgres_database, private_redis):
    stack = make_stack(postgres_database, private_redis.url, lease=1.0)
    queue = stack.settings.queue
    specs = [spec_of(XOR, name=f"xor-{i}", seed=i, epochs=100) for i in range(50)]
    run_ids = [stack.submit(spec) for spec in specs]
    broker = private_redis.client()
    assert broker.llen(queue) == 50
    stack.start_worker()
    stack.start_worker()
    wait_for(lambda: statuses(stack, run_ids).get("succeeded", 0) >= 2, 30, "the first runs to succeed")

    private_redis.stop()
    time.sleep(2)
    private_redis.start()
    assert broker.llen(queue) == 0  # every message is gone: only the database knows what is left to do
    left = statuses(stack, run_ids)
    assert left.get("queued", 0) >= 10, left

    runs = wait_all_finished(stack, run_ids, timeout=120)
    assert [(run.status, run.error) for run in runs] == [("succeeded", None)] * 50
    for run_id in run_ids:
        assert_one_row_per_epoch(stack, run_id, 100)
    for run_id, spec in list(zip(run_ids, specs))[::10]:
        assert_bit_identical_to_fit(stack, run_id, spec)


# --------------------------------------------------------------------------- 3. the database stopped for 10 s


def test_a_database_outage_pauses_training_and_loses_nothing(
    make_stack, private_postgres, redis_url, redis_client, start_api
):
    # The default 30 s lease: the workers must ride the outage out themselves (no run may change hands).
    stack = make_stack(private_postgres.create_database("trainyard"), redis_url, lease=30.0, shared=redis_client)
    with stack.Session() as s, s.begin():
        token, _ = repo.create_token(session=s, scope="read", name="faults")
    specs = [spec_of(DIGITS, name=f"digits-{seed}", seed=seed, epochs=500) for seed in range(4)]
    run_ids = [stack.submit(spec) for spec in specs]
    stack.start_worker()
    stack.start_worker()
    api = start_api(stack)
    http = api.client(token)
    api.wait_ready()
    assert http.get("/readyz").status_code == 200
    wait_for(lambda: statuses(stack, run_ids).get("running", 0) == 2 and
             all(run.epochs_done >= 20 for run_id in run_ids if (run := stack.run(run_id)).status == "running"),
             60, "two runs to be training")

    private_postgres.stop()
    stopped = time.monotonic()
    readiness, listing = [], []
    while time.monotonic() - stopped < 10:
        response = http.get("/readyz")
        readiness.append((response.status_code, response.json()))
        response = http.get("/api/runs")
        listing.append((response.status_code, response.json()["error"]["code"] if response.is_error else None))
        time.sleep(0.5)
    private_postgres.start()
    assert len(readiness) >= 10
    unavailable = {"database": "unavailable", "broker": "ok"}
    assert all(code == 503 and {k: body[k] for k in unavailable} == unavailable for code, body in readiness)
    assert set(listing) == {(503, "unavailable")}

    # The same API process recovers by itself, and the workers carry on where they were.
    wait_for(lambda: http.get("/readyz").status_code == 200, 15, "/readyz to answer 200 again")
    assert http.get("/api/runs").status_code == 200 and api.process.poll() is None
    runs = wait_all_finished(stack, run_ids, timeout=180)
    assert [(run.status, run.error, run.attempts) for run in runs] == [("succeeded", None, 1)] * 4
    assert any("the database is unreachable, trying again" in worker.output() for worker in stack.workers)
    for run_id, spec in zip(run_ids, specs):
        assert_one_row_per_epoch(stack, run_id, 500)
        assert_bit_identical_to_fit(stack, run_id, spec)

