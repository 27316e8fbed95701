"""Faults: workers killed at random, the broker and the database stopped and started under running work.

Each test runs a deployment of its own (PostgreSQL, Redis, two ``python -m
worker`` processes); a server the test stops is a private one
(:mod:`private_servers`).  What must hold every time: every run ends as it
should, with each epoch stored exactly once, and its final weights equal, bit
for bit, those of an uninterrupted ``fit`` of the same spec in this process.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from typing import Any

from factories import DIGITS, XOR, spec_of
from sqlalchemy import func, select
from worker_kit import (
    Stack,
    WorkerProcess,
    assert_bit_identical_to_fit,
    assert_one_row_per_epoch,
    epochs_lasting,
    wait_for,
)

from trainyard.service.storage import repo
from trainyard.service.storage.models import Run


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


def reach(stack: Stack, run_id: str, epoch: int) -> Run:
    """The run once it has stored ``epoch`` epochs, or has stopped running."""

    def progressed() -> Run | None:
        run = stack.run(run_id)
        return run if run.epochs_done >= epoch or run.status != "running" else None

    return wait_for(progressed, 60, f"run {run_id} to reach epoch {epoch}", interval=0.01)


# --------------------------------------------------------------------------- 1. workers killed at random


def test_workers_sigkilled_at_random_moments_lose_nothing(shared_stack: Stack):
    stack = shared_stack
    epochs = epochs_lasting(DIGITS, 0.7, at_least=600)  # each run long enough to be killed in, on any machine
    specs = [spec_of(DIGITS, name=f"digits-{seed}", seed=seed, epochs=epochs) for seed in range(10)]
    run_ids = [stack.submit(spec) for spec in specs]
    flush = {"TRAINYARD_FLUSH_SECONDS": "0.1"}  # progress seen often enough to kill at a chosen epoch
    stack.start_worker(**flush)
    stack.start_worker(**flush)
    rng = random.Random(20261128)
    kills: list[tuple[str, int]] = []  # (run, epochs stored when its worker was killed)
    while len(kills) < 6 and not all(stack.run(run_id).finished for run_id in run_ids):
        training = [run for run_id in run_ids if (run := stack.run(run_id)).status == "running" and holder(stack, run)]
        if not training:
            time.sleep(0.05)
            continue
        # A moment at random in a run's training: once it has stored a random number of epochs.
        chosen = rng.choice(training)
        run = reach(stack, chosen.id, min(chosen.epochs_done + rng.randint(1, epochs // 3), epochs - 1))
        victim = holder(stack, run) if run.status == "running" else None
        if victim is None:  # it finished (or changed hands) first: choose again
            continue
        victim.kill()
        kills.append((run.id, stack.run(run.id).epochs_done))
        stack.workers.remove(victim)
        stack.start_worker(**flush)  # the machine comes back
    runs = wait_all_finished(stack, run_ids, timeout=180)
    assert len(kills) >= 4, f"only {len(kills)} kills before every run finished: {kills}"
    assert all(stored < epochs for _, stored in kills)  # each kill interrupted a run
    assert [(run.status, run.error) for run in runs] == [("succeeded", None)] * 10
    attempts = {run.id: run.attempts for run in runs}
    assert all(attempts[run_id] >= 2 for run_id, _ in kills)  # each interrupted run was claimed again
    for run_id, spec in zip(run_ids, specs):
        assert_one_row_per_epoch(stack, run_id, epochs)
        assert_bit_identical_to_fit(stack, run_id, spec)


# --------------------------------------------------------------------------- 2. the broker restarted empty


def test_runs_survive_a_broker_restart_that_loses_every_message(make_stack, postgres_database, private_redis):
    stack = make_stack(postgres_database, private_redis.url, lease=1.0)
    queue = stack.settings.queue
    # Runs of about 0.2 s on any machine (100 epochs took 10 ms: the two workers emptied the queue in the second
    # that passes between the second success and Redis stopping, leaving nothing for the reconciler to re-send).
    epochs = epochs_lasting(XOR, 0.2, at_least=2000)
    specs = [spec_of(XOR, name=f"xor-{i}", seed=i, epochs=epochs) for i in range(50)]
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
        assert_one_row_per_epoch(stack, run_id, epochs)
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
    api = start_api(stack)
    http = api.client(token)
    api.wait_ready()
    assert http.get("/readyz").status_code == 200
    epochs = 1500
    specs = [spec_of(DIGITS, name=f"digits-{seed}", seed=seed, epochs=epochs) for seed in range(3)]
    run_ids = [stack.submit(spec) for spec in specs]
    stack.start_worker()
    stack.start_worker()
    wait_for(lambda: statuses(stack, run_ids).get("running", 0) == 2, 60, "two runs to be training")

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
    assert [(run.status, run.error, run.attempts) for run in runs] == [("succeeded", None, 1)] * 3
    assert any("the database is unreachable, trying again" in worker.output() for worker in stack.workers)
    for run_id, spec in zip(run_ids, specs):
        assert_one_row_per_epoch(stack, run_id, epochs)
        assert_bit_identical_to_fit(stack, run_id, spec)



def test_submit_watch_waits_out_a_database_restart(make_stack, private_postgres, redis_url, redis_client, start_api,
                                                     tmp_path):
    """``trainyard submit --watch`` while PostgreSQL is down, then again while its run trains: the client repeats
    what is safe to repeat (the submit carries an idempotency key, the watch's reads are GETs) after each 503's
    Retry-After, and ends with the run succeeded, made once."""
    stack = make_stack(private_postgres.create_database("trainyard"), redis_url, lease=30.0, shared=redis_client)
    with stack.Session() as s, s.begin():
        token, _ = repo.create_token(session=s, scope="write", name="watch")
    api = start_api(stack)
    api.wait_ready()
    stack.start_worker()
    spec = spec_of(DIGITS, name="watched", epochs=epochs_lasting(DIGITS, 6.0, at_least=600))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, "TRAINYARD_URL": api.url, "TRAINYARD_TOKEN": token}

    private_postgres.stop()  # the submit itself meets the outage
    log = tmp_path / "watch.log"
    with open(log, "wb") as out:
        watch = subprocess.Popen([sys.executable, "-P", "-m", "trainyard", "submit", str(spec_file), "--watch"],
                                 env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(6)
        assert watch.poll() is None, log.read_text()
        private_postgres.start()
        run = wait_for(lambda: (runs := stack.runs()) and runs[0].status == "running" and runs[0], 60,
                       "the run to be training")
        private_postgres.stop()  # and the watch's reads meet a second one
        time.sleep(6)
        private_postgres.start()
        assert watch.wait(120) == 0, log.read_text()
    finally:
        if watch.poll() is None:
            os.killpg(watch.pid, 9)
    output = log.read_text()
    assert f"run {run.id} succeeded after {spec['epochs']} epochs" in output, output
    assert [(made.id, made.status) for made in stack.runs()] == [(run.id, "succeeded")]  # one run, not two
