"""Runs logged from the user's own loop with the Python client (``Client.track``, ``trainyard.track``) against the
real API over HTTP, on SQLite and PostgreSQL: batching, failure, an API that goes away and comes back."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from werkzeug.serving import make_server

import trainyard
from trainyard.client import Client
from trainyard.service.app import create_app
from trainyard.service.config import Settings
from trainyard.service.storage import repo
from trainyard.tracking import TrackedRun

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "perceptron_by_hand.py"


def _requests(client: Client, monkeypatch) -> list[str]:
    """The method and path of every request ``client`` sends from now on (it still sends them)."""
    sent: list[str] = []
    request = client._request

    def counted(method: str, path: str, **kwargs):
        sent.append(f"{method} {path}")
        return request(method, path, **kwargs)

    monkeypatch.setattr(client, "_request", counted)
    return sent


def test_a_tracked_run_logs_in_batches_and_finishes(client, monkeypatch):
    sent = _requests(client, monkeypatch)
    params = {"lr": 0.1, "net": {"units": [8, 4]}, "optimizer": "by hand"}

    with client.track("by hand", params=params, tags=["mine"], notes="a loop of my own") as run:
        assert isinstance(run, TrackedRun) and run.run["status"] == "running" and run.run["kind"] == "tracked"
        for epoch in range(1, 3001):
            run.log(epoch, train_loss=1.0 / epoch, val_loss=2.0 / epoch, bleu=float(epoch % 7), margin=None)
        run.log(3000, train_accuracy=0.75)  # logged again: merged into the same epoch
        run.log_weights(3000, [np.eye(2), np.zeros(2)])

    shown = client.run(run.id)
    assert (shown["status"], shown["kind"], shown["epochs_done"]) == ("succeeded", "tracked", 3000)
    assert shown["spec"] == params
    epochs = client.epochs(run.id)
    assert [row["epoch"] for row in epochs] == list(range(1, 3001))
    assert epochs[9]["bleu"] == 3.0 and epochs[9]["train_loss"] == 0.1 and epochs[9]["margin"] is None
    assert epochs[-1]["train_accuracy"] == 0.75 and epochs[-1]["val_loss"] == 2.0 / 3000
    weights = client.weights(run.id)
    assert weights["epoch"] == 3000 and weights["layers"][0]["W"] == [[1.0, 0.0], [0.0, 1.0]]
    posts = [line for line in sent if line.startswith("POST") and line.endswith("/epochs")]
    assert 1 <= len(posts) <= 10, sent  # batches, never a request per log call


def test_a_block_that_raises_fails_the_run_and_the_exception_goes_on(client):
    with pytest.raises(ZeroDivisionError), client.track("broken") as run:
        run.log(1, train_loss=0.5)
        raise ZeroDivisionError("division by zero")

    shown = client.run(run.id)
    assert shown["status"] == "failed" and "ZeroDivisionError: division by zero" in shown["error"]
    assert [row["train_loss"] for row in client.epochs(run.id)] == [0.5]  # what was logged before is kept


def test_what_log_refuses_it_refuses_at_once(client):
    with client.track("checks") as run:
        for bad in ({"epoch": 1}, {"weight_norms": 1.0}, {"9lives": 1.0}, {"a b": 1.0}):
            with pytest.raises(ValueError):
                run.log(1, **bad)
        with pytest.raises(ValueError):
            run.log(1, loss="high")
        with pytest.raises(ValueError):
            run.log(0, loss=1.0)
        run.log(1, loss=float("nan"), gain=np.float32(2.5), count=np.int64(3))
    (row,) = client.epochs(run.id)
    assert (row["epoch"], row["loss"], row["gain"], row["count"]) == (1, None, 2.5, 3.0)  # NaN is sent as null
    with pytest.raises(RuntimeError):
        run.log(2, loss=1.0)  # finished


def test_trainyard_track_reads_the_address_and_token_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("TRAINYARD_URL", server.url)
    monkeypatch.setenv("TRAINYARD_TOKEN", server.tokens["write"])
    monkeypatch.setenv("TRAINYARD_PROJECT", "from-env")

    with trainyard.track("from the environment", params={"seed": 1}) as run:
        run.log(1, train_loss=0.25)

    with server.client("read") as reader:
        shown = reader.run(run.id)
    assert (shown["status"], shown["project"], shown["spec"]) == ("succeeded", "from-env", {"seed": 1})


def test_no_epoch_is_lost_while_the_api_is_down(url, queue, tmp_path):
    """The API stops mid-run and comes back on the same address: the loop never notices, the buffer is sent."""
    app = create_app(Settings(data_dir=tmp_path, database_url=url, broker_url=queue.app.conf.broker_url), queue=queue)
    with app.extensions["trainyard"].Session() as s, s.begin():
        token = repo.create_token(session=s, scope="write")[0]
    http = _serve(app, 0)
    port = http.server_port
    client = Client(f"http://127.0.0.1:{port}", token, timeout=5)
    errors = io.StringIO()
    try:
        run = TrackedRun(client, client._json("POST", "/api/runs/track", json={"name": "outage"}), stderr=errors)
        for epoch in range(1, 51):
            run.log(epoch, train_loss=1.0 / epoch)
        _wait(lambda: client.run(run.id)["epochs_done"] == 50)
        _stop(http)
        started = time.perf_counter()
        for epoch in range(51, 101):  # logged while nothing answers
            run.log(epoch, train_loss=1.0 / epoch)
        assert time.perf_counter() - started < 0.5  # the loop never waits on the network
        time.sleep(1.5)  # the sender tries and fails meanwhile
        http = _serve(app, port)
        finished = run.finish()
        assert finished is not None and finished["status"] == "succeeded"
        assert [row["epoch"] for row in client.epochs(run.id)] == list(range(1, 101))
    finally:
        _stop(http)
        client.close()
        app.extensions["trainyard"].engine.dispose()


def test_an_api_that_never_comes_back_costs_the_oldest_epochs_said_once(client, server):
    errors = io.StringIO()
    run = TrackedRun(Client("http://127.0.0.1:9", server.tokens["write"], timeout=1), {"id": "0" * 32},
                     max_buffered=10, stderr=errors, send_seconds=0.05, finish_wait=0.5)
    for epoch in range(1, 31):
        run.log(epoch, train_loss=1.0)
    time.sleep(0.3)
    assert list(run._epochs) == list(range(21, 31))  # the newest kept
    assert run.finish() is None  # nothing answers: said, not raised
    said = errors.getvalue()
    assert said.count("the oldest epochs give way") == 1 and "could not finish it" in said
    assert "10 epochs could not be sent" in said


def test_the_example_logs_the_seed_perceptron(server):
    environment = {**os.environ, "TRAINYARD_URL": server.url, "TRAINYARD_TOKEN": server.tokens["write"]}
    done = subprocess.run([sys.executable, "-P", str(EXAMPLE)], env=environment, capture_output=True, text=True,
                          timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("predicts [0, 1, 1, 1]")
    run_id = done.stdout.split()[1].rstrip(":")
    with server.client("read") as reader:
        shown = reader.run(run_id)
        epochs = reader.epochs(run_id)
        weights = reader.weights(run_id)
    assert (shown["status"], shown["project"], shown["kind"]) == ("succeeded", "notebook", "tracked")
    assert [row["epoch"] for row in epochs] == list(range(1, 11)) and epochs[-1]["train_accuracy"] == 1.0
    assert "updates" in epochs[0] and epochs[-1]["updates"] == 0.0
    assert np.allclose([row[0] for row in weights["layers"][0]["W"]], [0.1, 0.1])


def _serve(app, port: int):
    http = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return http


def _stop(http) -> None:
    http.shutdown()
    http.server_close()


def _wait(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
