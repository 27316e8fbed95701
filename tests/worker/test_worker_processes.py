"""Real ``python -m trainyard.worker`` processes: on the local transport with SQLite, and on Redis with PostgreSQL.

One worker (two pool processes) is shared by the module's ordinary tests;
the crash tests start a pair of workers of their own, find which one
trains the run, and kill or stop it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from factories import DIGITS, DIVERGES, XOR, spec_of
from sqlalchemy import create_engine, text
from worker_kit import (
    Stack,
    WorkerProcess,
    assert_bit_identical_to_fit,
    assert_one_row_per_epoch,
    epochs_lasting,
    wait_for,
)

from trainyard.service.documents import weights_layers
from trainyard.service.storage import repo
from trainyard.worker.reconciler import broker_housekeeping

#: kombu's SQLAlchemy transport (the local broker) declares its queue with ``noload``, deprecated in SQLAlchemy 2.1.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


@pytest.fixture(scope="module")
def shared(stack_factory) -> Stack:
    """A stack with one running worker of concurrency 2."""
    stack = stack_factory(lease=2.0)
    stack.start_worker(concurrency=2)
    return stack


def wait_running(stack: Stack, run_id: str, holds: Callable[[Any], bool], what: str, timeout: float = 60) -> Any:
    """Wait until the run is running and ``holds(run)``, or is finished (which the caller checks); the run."""
    return wait_for(lambda: ((run := stack.run(run_id)).finished or run.status == "running" and holds(run)) and run,
                    timeout, what)


def wait_training(stack: Stack, run_id: str, min_epochs: int = 1) -> Any:
    """Wait until the run is running and has flushed at least ``min_epochs`` epochs."""
    return wait_for(
        lambda: (run := stack.run(run_id)).status == "running" and run.epochs_done >= min_epochs and run,
        30, f"run {run_id} to train {min_epochs} epochs",
    )


# --------------------------------------------------------------------------- one shared worker


def test_a_submitted_run_succeeds_with_every_epoch_and_weights(shared: Stack):
    run_id = shared.submit(XOR)
    run = shared.wait_finished(run_id)
    assert (run.status, run.error, run.attempts, run.epochs_done) == ("succeeded", None, 1, 200)
    assert_one_row_per_epoch(shared, run_id, 200)
    assert shared.weight_epochs(run_id) == list(range(1, 201))
    layers = weights_layers(shared.weights(run_id)[1])
    assert [np.shape(layer["W"]) for layer in layers] == [(2, 8), (8, 1)]
    assert run.final_train_accuracy == 1.0 and run.best_epoch is not None


def test_a_duplicated_message_trains_once(shared: Stack):
    run_id = shared.create(XOR)
    for _ in range(3):
        shared.send(run_id)
    run = shared.wait_finished(run_id)
    after = shared.submit(spec_of(XOR, epochs=5))  # sent after the duplicates: done once they are consumed
    shared.wait_finished(after)
    time.sleep(0.5)
    run = shared.run(run_id)
    assert (run.status, run.attempts) == ("succeeded", 1)
    assert_one_row_per_epoch(shared, run_id, 200)


def test_a_cancelled_queued_run_is_never_trained(shared: Stack):
    run_id = shared.create(XOR)
    with shared.Session() as s, s.begin():
        repo.request_cancel(session=s, run_id=run_id)
    shared.send(run_id)
    shared.wait_finished(shared.submit(spec_of(XOR, epochs=5)))
    time.sleep(0.5)
    run = shared.run(run_id)
    assert (run.status, run.attempts, run.epochs_done) == ("cancelled", 0, 0)


def test_cancelling_a_running_run_stops_it_and_keeps_its_epochs(shared: Stack):
    epochs = epochs_lasting(DIGITS, 2.0, at_least=2000)  # still training when the cancel comes, however fast
    run_id = shared.submit(spec_of(DIGITS, epochs=epochs))
    wait_training(shared, run_id)
    with shared.Session() as s, s.begin():
        repo.request_cancel(session=s, run_id=run_id)
    run = shared.wait_finished(run_id, timeout=10)
    assert run.status == "cancelled" and 0 < run.epochs_done < epochs
    assert_one_row_per_epoch(shared, run_id, run.epochs_done)
    assert shared.weight_epochs(run_id)[-1] == run.epochs_done  # the last epoch's weights


def test_divergence_fails_the_run_naming_the_epoch(shared: Stack):
    run_id = shared.submit(DIVERGES)
    run = shared.wait_finished(run_id)
    assert run.status == "failed" and run.error.startswith("training diverged at epoch 9")
    assert_one_row_per_epoch(shared, run_id, 8)


def test_an_uploaded_dataset_is_trained(shared: Stack):
    rows = [(0, 0, "no"), (0, 1, "yes"), (1, 0, "yes"), (1, 1, "no")] * 4
    content = b"a,b,label\n" + b"".join(f"{a},{b},{label}\n".encode() for a, b, label in rows)
    with shared.Session() as s, s.begin():
        dataset = repo.create_dataset(
            session=s, name="xor-csv", filename="xor.csv", content=content, target="label",
            task="classification", n_samples=len(rows), n_features=2, classes=["no", "yes"],
        )
    spec = spec_of(XOR, dataset={"upload": dataset.id, "test_fraction": 0.0}, optimizer={"name": "adam", "lr": 0.05})
    run = shared.wait_finished(shared.submit(spec))
    assert (run.status, run.error, run.final_train_accuracy) == ("succeeded", None, 1.0)


def test_consumed_messages_do_not_pile_up_in_the_broker(shared: Stack):
    housekeeping = broker_housekeeping(shared.settings.broker_url)
    if shared.kind == "redis":  # Redis deletes what is consumed
        assert housekeeping is None
        return
    shared.wait_finished(shared.submit(spec_of(XOR, epochs=5)))
    engine = create_engine(shared.settings.broker_url.removeprefix("sqla+"))
    try:
        def consumed() -> int:
            with engine.connect() as connection:
                return connection.execute(text("SELECT count(*) FROM kombu_message WHERE visible = 0")).scalar()

        wait_for(lambda: consumed() == 0, 10, "the reconciler to delete the consumed messages")
    finally:
        engine.dispose()
        housekeeping.close()


# --------------------------------------------------------------------------- crashes and shutdowns


def crash_spec() -> dict[str, Any]:
    """DIGITS for 2 s of ``fit`` on this machine (3 s in a worker; at least 400 epochs), so a worker is always
    stopped mid-run however fast the machine: 400 epochs took 0.7 s on one and ended between two polls of the test."""
    return spec_of(DIGITS, epochs=epochs_lasting(DIGITS, 2.0, at_least=400))


def start_pair(stack: Stack) -> list[WorkerProcess]:
    """Two workers on the stack, started side by side, storing progress every 0.1 s (so it is seen early)."""
    return [stack.start_worker(TRAINYARD_FLUSH_SECONDS="0.1") for _ in range(2)]


def trainer_of(pair: list[WorkerProcess], run: Any) -> tuple[WorkerProcess, WorkerProcess]:
    """(the worker whose pool process trains ``run``, the other one)."""
    pid = int(run.worker.split(":")[1])
    group = os.getpgid(pid)
    victim = next(worker for worker in pair if worker.process.pid == group)
    return victim, next(worker for worker in pair if worker is not victim)


def test_sigkill_mid_run_resumes_elsewhere_bit_identical(stack_factory):
    stack = stack_factory(lease=2.0)
    pair = start_pair(stack)
    spec = crash_spec()
    run_id = stack.submit(spec)
    victim, rescuer = trainer_of(pair, wait_training(stack, run_id))
    victim.kill()
    killed_at = stack.run(run_id).epochs_done
    assert killed_at < spec["epochs"]
    run = stack.wait_finished(run_id, timeout=60)
    assert (run.status, run.error, run.attempts) == ("succeeded", None, 2)
    assert f"resuming from the checkpoint of epoch {killed_at}" in rescuer.output()
    assert_one_row_per_epoch(stack, run_id, spec["epochs"])
    assert_bit_identical_to_fit(stack, run_id, spec)


def test_sigterm_requeues_the_run_at_once(stack_factory):
    stack = stack_factory(lease=60.0)  # recovery through an expired lease would take a minute
    pair = start_pair(stack)
    spec = crash_spec()
    run_id = stack.submit(spec)
    victim, rescuer = trainer_of(pair, wait_training(stack, run_id))
    stopped = time.monotonic()
    victim.signal(signal.SIGTERM)
    assert victim.process.wait(15) == 0
    wait_running(stack, run_id, lambda run: trainer_of(pair, run)[0] is rescuer, "another worker to claim the run", 10)
    assert time.monotonic() - stopped < 15
    run = stack.wait_finished(run_id, timeout=60)
    assert (run.status, run.error, run.attempts) == ("succeeded", None, 1)  # handed over within its first attempt
    assert "resuming from the checkpoint of epoch" in rescuer.output()
    assert_one_row_per_epoch(stack, run_id, spec["epochs"])
    assert_bit_identical_to_fit(stack, run_id, spec)


def test_rolling_restarts_never_use_up_a_runs_attempts(stack_factory):
    """Six workers in turn take the run and are stopped with SIGTERM (more than ``MAX_ATTEMPTS``): each hands
    the run on, and it succeeds on its first attempt, every epoch once, bit-identical to an uninterrupted run."""
    stack = stack_factory(lease=60.0)  # a hand-over through an expired lease would take minutes: each is a release
    spec = spec_of(DIGITS, epochs=epochs_lasting(DIGITS, 4.0, at_least=800))
    run_id = stack.submit(spec)
    done = 0
    for restart in range(6):
        worker = stack.start_worker(TRAINYARD_FLUSH_SECONDS="0.1")
        run = wait_running(stack, run_id, lambda run, done=done: run.epochs_done > done, f"worker {restart} to train")
        assert (run.status, run.error) == ("running", None), restart
        worker.signal(signal.SIGTERM)
        assert worker.process.wait(15) == 0
        run = stack.run(run_id)
        assert (run.status, run.attempts) == ("queued", 1), restart
        done = run.epochs_done
    assert done < spec["epochs"]
    stack.start_worker()
    run = stack.wait_finished(run_id, timeout=120)
    assert (run.status, run.error, run.attempts) == ("succeeded", None, 1)
    assert_one_row_per_epoch(stack, run_id, spec["epochs"])
    assert_bit_identical_to_fit(stack, run_id, spec)


def test_a_run_whose_workers_are_killed_again_and_again_is_given_up(stack_factory):
    """Five workers in turn take the run and are SIGKILLed: each loss is an attempt, and the sixth claim fails
    the run instead of training it."""
    stack = stack_factory(lease=2.0)
    run_id = stack.submit(crash_spec())
    for attempt in range(1, 6):
        worker = stack.start_worker(TRAINYARD_FLUSH_SECONDS="0.1")
        run = wait_running(stack, run_id, lambda run, attempt=attempt: run.attempts == attempt, f"attempt {attempt}")
        assert (run.status, run.attempts) == ("running", attempt)
        worker.kill()
    stack.start_worker()
    run = stack.wait_finished(run_id, timeout=60)
    assert (run.status, run.attempts) == ("failed", 6)
    assert run.error.startswith("gave up after 5 attempts: each time, the worker training it was lost")
