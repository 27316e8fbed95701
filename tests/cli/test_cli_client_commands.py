"""The `trainyard` client commands (submit, runs, show, cancel, compare, export) against the real API over HTTP."""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from click.testing import CliRunner, Result
from factories import stored

from trainyard.cli import main
from trainyard.service.storage import repo


@pytest.fixture
def cli(server, tmp_path) -> Callable[..., Result]:
    """``cli(*args, token="write", input=None)``: run `trainyard` against the test server (token None: none)."""
    data_dir = tmp_path / "cli-data"  # no token file here unless a test writes one

    def invoke(*args: str, token: str | None = "write", input: str | None = None, **env: str) -> Result:
        environment = {"TRAINYARD_URL": server.url, "TRAINYARD_DATA_DIR": str(data_dir),
                       "TRAINYARD_TOKEN": server.tokens[token] if token else None, **env}
        return CliRunner().invoke(main, list(args), env=environment, input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def spec_file(tmp_path, spec):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _submitted(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture
def worker(server, train) -> Iterator[Callable[[Callable[[str], None]], None]]:
    """``worker(handle)``: a thread that waits for the next queued run and calls ``handle(run_id)`` on it."""
    threads: list[threading.Thread] = []

    def start(handle: Callable[[str], None]) -> None:
        def wait_and_handle() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with server.Session() as s:
                    queued, _ = repo.list_runs(session=s, status="queued")
                if queued:
                    handle(queued[0].id)
                    return
                time.sleep(0.05)

        threads.append(threading.Thread(target=wait_and_handle, daemon=True))
        threads[-1].start()

    yield start
    for thread in threads:
        thread.join(30)


def test_help_says_what_trainyard_is_and_where_to_start():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert result.output.splitlines()[2].strip() == "Trainyard: train neural networks and track the experiments."
    assert "trainyard up --demo" in result.output and "``" not in result.output


def test_submit_prints_the_run_id(cli, spec_file, client):
    run_id = _submitted(cli("submit", str(spec_file)))
    assert client.run(run_id)["status"] == "queued"


def test_submit_from_stdin(cli, spec, client):
    run_id = _submitted(cli("submit", "-", input=json.dumps(spec)))
    assert client.run(run_id)["name"] == "xor-tanh"


def test_submit_refused_spec_names_the_field(cli, tmp_path, spec, client):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec | {"optimizer": {"name": "sgd", "lr": -1}}))
    refused = cli("submit", str(path))
    assert refused.exit_code == 1
    assert "HTTP 422" in refused.output and "optimizer.lr" in refused.output
    path.write_text("{not json")
    not_json = cli("submit", str(path))
    assert not_json.exit_code == 1 and "not JSON" in not_json.output
    assert list(client.runs()) == []


def test_submit_watch_follows_the_run_to_success(cli, spec_file, worker, train):
    worker(train)
    watched = cli("submit", str(spec_file), "--watch")
    assert watched.exit_code == 0, watched.output
    run_id = watched.stdout.splitlines()[0]
    assert f"run {run_id} succeeded after 30 epochs: final train loss" in watched.stdout


def test_submit_watch_exits_1_when_the_run_fails(cli, spec_file, worker, server):
    def fail(run_id: str) -> None:
        with server.Session() as s, s.begin():
            repo.claim_run(session=s, run_id=run_id, worker="test", lease_seconds=60)
            repo.finish_run(session=s, run_id=run_id, status="failed", error="training diverged at epoch 3")

    worker(fail)
    watched = cli("submit", str(spec_file), "--watch")
    assert watched.exit_code == 1
    assert "failed: training diverged at epoch 3" in watched.output


def test_runs_table_and_filters(cli, spec, client, train):
    ids = [client.submit(spec | {"name": f"run-{i}"})["id"] for i in range(3)]
    train(ids[0])
    listed = cli("runs")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "name", "status", "epochs"]
    assert [line.split()[0] for line in lines[1:]] == ids[::-1]
    assert "succeeded" in lines[3] and "30/30" in lines[3] and "queued" in lines[1]
    assert len(cli("runs", "--limit", "2").stdout.splitlines()) == 3
    assert [line.split()[1] for line in cli("runs", "--status", "succeeded").stdout.splitlines()[1:]] == ["run-0"]
    assert [line.split()[1] for line in cli("runs", "--name", "run-2").stdout.splitlines()[1:]] == ["run-2"]
    assert cli("runs", "--status", "nope").exit_code == 2


def test_show(cli, spec, client, train):
    run_id = client.submit(spec)["id"]
    train(run_id)
    shown = cli("show", run_id)
    assert shown.exit_code == 0, shown.output
    assert "succeeded" in shown.stdout and "30/30" in shown.stdout and "final_train_loss" in shown.stdout
    assert '"optimizer": {' in shown.stdout  # the spec
    assert json.loads(cli("show", run_id, "--json").stdout) == client.run(run_id)
    missing = cli("show", "0" * 32)
    assert missing.exit_code == 1 and f"no run {'0' * 32}" in missing.output


def test_cancel(cli, spec, client, train):
    run_id = client.submit(spec)["id"]
    cancelled = cli("cancel", run_id)
    assert cancelled.exit_code == 0 and "cancel requested" in cancelled.stdout
    assert client.run(run_id)["cancel_requested"] is True
    done = client.submit(spec)["id"]
    train(done)
    late = cli("cancel", done)
    assert late.exit_code == 1 and "already finished" in late.output


def test_compare_shows_the_differences_and_final_metrics(cli, spec, client, train):
    a = client.submit(spec)["id"]
    b = client.submit(spec | {"name": "xor-adam", "optimizer": {"name": "adam", "lr": 0.05}})["id"]
    train(a)
    train(b)
    compared = cli("compare", a, b)
    assert compared.exit_code == 0, compared.output
    rows = {line.split()[0]: line.split()[1:] for line in compared.stdout.splitlines()[1:]}
    assert rows["optimizer.name"] == ["sgd", "adam"]
    assert rows["optimizer.lr"] == ["0.5", "0.05"]
    assert "optimizer.momentum" in rows and "dataset.name" not in rows and "name" not in rows
    assert rows["status"] == ["succeeded", "succeeded"]
    finals = [client.run(run_id)["summary"]["final_train_loss"] for run_id in (a, b)]
    assert rows["final_train_loss"] == [f"{loss:.4g}" for loss in finals]
    assert f"xor-tanh ({a[:8]})" in compared.stdout.splitlines()[0]


def test_export_csv_json_and_npz(cli, spec, client, train, tmp_path):
    run_id = client.submit(spec)["id"]
    train(run_id)
    epochs = client.epochs(run_id)

    as_csv = cli("export", run_id, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    norms = ["weight_norm_1", "weight_norm_2", "grad_norm_1", "grad_norm_2"]  # a layer of 8, then the output
    assert list(rows[0]) == ["epoch", *repo.EPOCH_METRICS, *norms]
    assert [float(row["grad_norm_2"]) for row in rows] == [epoch["grad_norms"][1] for epoch in epochs]
    assert [int(row["epoch"]) for row in rows] == list(range(1, 31))
    assert [float(row["train_loss"]) for row in rows] == [epoch["train_loss"] for epoch in epochs]
    assert all(row["val_loss"] == "" for row in rows)  # no held-out data: empty cells

    out = tmp_path / "run.json"
    assert cli("export", run_id, "--format", "json", "-o", str(out)).exit_code == 0
    document = json.loads(out.read_text())
    assert document["run"] == client.run(run_id) and document["epochs"] == epochs

    out = tmp_path / "weights.npz"
    assert cli("export", run_id, "--format", "npz", "-o", str(out)).exit_code == 0
    with np.load(out, allow_pickle=False) as arrays:
        last = client.weights(run_id)
        assert np.array_equal(arrays["W2"], np.asarray(last["layers"][1]["W"]))
    assert cli("export", run_id, "--format", "npz", "--epoch", "2").stdout_bytes == client.weights(
        run_id, epoch=2, format="npz")
    missing = cli("export", run_id, "--format", "npz", "--epoch", "99")
    assert missing.exit_code == 1 and "no weights" in missing.output


def test_token_comes_from_the_data_dir_then_the_environment(cli, server, tmp_path, client, spec):
    client.submit(spec)
    anonymous = cli("runs", token=None)
    assert anonymous.exit_code == 1
    assert "HTTP 401" in anonymous.output and "TRAINYARD_TOKEN" in anonymous.output
    (tmp_path / "cli-data").mkdir()
    (tmp_path / "cli-data" / "token").write_text(server.tokens["read"] + "\n")
    assert cli("runs", token=None).exit_code == 0
    wrong = cli("runs", "--token", "ty_wrong", token=None)
    assert wrong.exit_code == 1 and "unknown or revoked token" in wrong.output


def test_unreachable_service_is_a_clear_error(cli, tmp_path):
    result = cli("runs", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert "cannot reach Trainyard at http://127.0.0.1:9" in result.output


def test_sweep_watch_ranks_the_runs_when_all_have_ended(cli, tmp_path, spec, server, client):
    """A grid of three learning rates, trained here by the worker's own training function as the runs queue up."""
    from trainyard.worker.training import Context, train_run

    sweep_file = tmp_path / "sweep.json"
    grid = {"name": "lr", "spec": spec, "method": "grid", "space": {"optimizer.lr": [0.5, 0.05, 0.005]}}
    sweep_file.write_text(json.dumps(grid))
    context = Context(Session=server.Session, worker="test", lease_seconds=30, flush_seconds=0.5,
                      weights_budget_bytes=1 << 20)

    def train_all() -> None:
        deadline = time.monotonic() + 30
        done = 0
        while done < 3 and time.monotonic() < deadline:
            with server.Session() as s:
                queued, _ = repo.list_runs(session=s, status="queued")
            for run in queued:
                train_run(run.id, ctx=context)
                done += 1
            time.sleep(0.05)

    trainer_thread = threading.Thread(target=train_all, daemon=True)
    trainer_thread.start()
    watched = cli("sweep", str(sweep_file), "--watch")
    trainer_thread.join(30)

    assert watched.exit_code == 0, watched.output
    lines = watched.stdout.splitlines()
    sweep_id = lines[0]
    assert lines[1].split() == ["id", "name", "status", "train_loss"]
    ranked = [line.split() for line in lines[2:5]]
    losses = [float(row[-1]) for row in ranked]
    assert losses == sorted(losses) and all(row[-2] == "succeeded" for row in ranked)
    best = client.sweep(sweep_id)["best"]
    assert best["metric"] == "train_loss" and ranked[0][0] == best["run"]
    assert f"sweep {sweep_id}: 3 succeeded; best train_loss" in watched.stdout


def test_sweep_refused_names_the_point(cli, tmp_path, spec, client):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"name": "bad", "spec": spec, "method": "grid", "space": {"optimizer.lr": [0.1, -1]}}))
    refused = cli("sweep", str(path))
    assert refused.exit_code == 1 and "points.1.optimizer.lr" in refused.output
    assert list(client.runs()) == []


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output == f"trainyard {importlib.metadata.version('trainyard')}\n"


def test_sweeps_lists_them_and_runs_takes_a_sweeps_name(cli, spec, client):
    grid = {"name": "lr grid", "spec": spec, "method": "grid", "space": {"optimizer.lr": [0.5, 0.05]}}
    made = client.create_sweep(grid)
    client.submit(spec)  # a run of no sweep

    listed = cli("sweeps")
    assert listed.exit_code == 0, listed.output
    header, row = listed.stdout.splitlines()
    assert header.split() == ["id", "name", "method", "finished", "runs", "best", "created"]
    assert row.startswith(f"{made['id']}  lr grid") and "0/2" in row and "2 queued" in row
    for sweep in ("lr grid", made["id"]):
        runs = cli("runs", "--sweep", sweep).stdout.splitlines()[1:]
        assert sorted(line.split()[0] for line in runs) == sorted(run["id"] for run in made["runs"])


def test_submit_says_which_defaults_it_took(cli, spec, tmp_path):
    without = {key: value for key, value in spec.items() if key not in ("epochs", "batch_size")}
    path = tmp_path / "short.json"
    path.write_text(json.dumps(without))

    result = cli("submit", str(path))

    assert result.exit_code == 0, result.output
    assert "defaults taken for what the spec leaves out: " in result.stderr
    assert "epochs 100" in result.stderr and "batch_size 32" in result.stderr
    assert "defaults" not in cli("submit", "-", input=json.dumps(stored(spec))).stderr  # every field given


def test_compare_shows_a_missing_parameter_as_missing(cli, spec, client):
    a = client.submit(spec)["id"]
    b = client.submit(spec | {"lr_schedule": {"type": "step", "step_size": 5}})["id"]

    rows = {line.split()[0]: line.split()[1:] for line in cli("compare", a, b).stdout.splitlines()[1:]}

    assert rows["lr_schedule.type"] == ["-", "step"] and rows["lr_schedule.step_size"] == ["-", "5"]
    assert "lr_schedule" not in rows  # null in one run, an object in the other: its values are the rows above


def test_the_address_comes_from_the_data_dir(cli, server, tmp_path):
    """`trainyard up --port P` writes its address beside its token: the client commands need no --url."""
    unset = {"TRAINYARD_URL": None}
    assert "127.0.0.1:8000" in cli("runs", **unset).output  # no file: the default address, where nothing listens
    folder = tmp_path / "cli-data"
    folder.mkdir()
    (folder / "url").write_text(server.url + "\n")
    assert cli("runs", **unset).exit_code == 0
