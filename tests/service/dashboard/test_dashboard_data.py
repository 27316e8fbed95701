"""The JSON the dashboard's scripts fetch with the session: curves, polls, weights, decision boundary, exports."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from flask.testing import FlaskClient

from trainyard.service.dashboard.data import MAX_POLL_EPOCHS
from trainyard.service.storage import repo


@pytest.fixture
def reader(client: FlaskClient, logged_in) -> FlaskClient:
    logged_in("read")
    return client


def test_series_has_every_curve_downsampled_with_wall_time(reader, make_run) -> None:
    run_id = make_run(epochs=300, status="running", total=300)
    body = reader.get(f"/ui/data/runs/{run_id}/series?max_points=50").get_json()
    curves = body["curves"]
    assert body["run"]["status"] == "running" and body["run"]["epochs_done"] == 300
    assert 2 < len(curves["epoch"]) <= 50 and curves["epoch"][0] == 1 and curves["epoch"][-1] == 300
    assert set(curves) >= {"train_loss", "val_accuracy", "weight_norms", "grad_norms", "elapsed"}
    assert len(curves["weight_norms"][0]) == 2
    assert curves["elapsed"][-1] == pytest.approx(3.0)  # 300 epochs of 0.01 s, downsampling or not
    index = curves["epoch"].index(curves["epoch"][5])
    assert curves["elapsed"][index] == pytest.approx(0.01 * curves["epoch"][5])


def test_compare_data_downsamples_each_run(reader, make_run) -> None:
    a, b = make_run("a", epochs=2000, total=2000), make_run("b", epochs=5, total=5)
    body = reader.get(f"/ui/data/compare?runs={a},{b}&max_points=100").get_json()
    assert [run["name"] for run in body["runs"]] == ["a", "b"]
    assert len(body["curves"][a]["epoch"]) <= 100 and body["curves"][b]["epoch"] == [1, 2, 3, 4, 5]
    assert "elapsed" not in body["curves"][b]  # wall time only when asked for: it reads every epoch again
    assert body["curves"][b]["train_loss"] == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5], rel=1e-6)
    body = reader.get(f"/ui/data/compare?runs={a},{b}&max_points=100&elapsed=1").get_json()
    assert body["curves"][b]["elapsed"] == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05])
    assert body["curves"][a]["elapsed"][-1] == pytest.approx(20.0)
    assert reader.get(f"/ui/data/compare?runs={a},{'0' * 32}").status_code == 404
    assert reader.get("/ui/data/compare").status_code == 400


def test_poll_returns_statuses_and_only_new_epochs(reader, make_run, Session) -> None:
    a, b = make_run("a", epochs=3, status="running"), make_run("b")
    body = reader.get(f"/ui/data/poll?runs={a},{b}").get_json()
    assert [run["status"] for run in body["runs"]] == ["running", "queued"] and body["epochs"] == {}
    body = reader.get(f"/ui/data/poll?runs={a},{b}&since=1,0&fields=train_loss,seconds").get_json()
    assert body["epochs"] == {a: {"epoch": [2, 3], "train_loss": [0.5, 1 / 3], "seconds": [0.01, 0.01]}}
    with Session() as s, s.begin():
        repo.write_epochs(session=s, run_id=a, rows=[{"epoch": 4, "train_loss": 0.25}])
    body = reader.get(f"/ui/data/poll?runs={a}&since=3&fields=train_loss").get_json()
    assert body["epochs"][a] == {"epoch": [4], "train_loss": [0.25]} and body["runs"][0]["epochs_done"] == 4
    for query in ("runs=", f"runs={a}&since=x", f"runs={a},{b}&since=1", f"runs={a}&since=-1",
                  f"runs={a}&since=0&fields=bogus"):
        assert reader.get(f"/ui/data/poll?{query}").status_code == 400, query


def test_a_poll_reads_at_most_5000_epochs_a_run(reader, make_run) -> None:
    """A page that slept through a long run catches up in a few polls; each reads its epochs with a LIMIT, not the
    run (a poll of a million-epoch run from 0 took 16 s and 734 MB)."""
    run = make_run("long", epochs=MAX_POLL_EPOCHS + 7, status="running", total=MAX_POLL_EPOCHS + 100)
    first = reader.get(f"/ui/data/poll?runs={run}&since=0&fields=train_loss").get_json()["epochs"][run]["epoch"]
    assert first == list(range(1, MAX_POLL_EPOCHS + 1))
    rest = reader.get(f"/ui/data/poll?runs={run}&since={first[-1]}&fields=train_loss").get_json()["epochs"][run]
    assert rest["epoch"] == list(range(MAX_POLL_EPOCHS + 1, MAX_POLL_EPOCHS + 8))


def test_weights_list_the_stored_epochs_and_give_the_layers(reader, make_run) -> None:
    run_id = make_run(epochs=8, status="running", weights=True)
    body = reader.get(f"/ui/data/runs/{run_id}/weights").get_json()
    assert body["epochs"] == [1, 8] and body["epoch"] == 8
    assert [np.shape(layer["W"]) for layer in body["layers"]] == [(2, 4), (4, 1)]
    assert reader.get(f"/ui/data/runs/{run_id}/weights?epoch=1").get_json()["epoch"] == 1
    empty = reader.get(f"/ui/data/runs/{make_run()}/weights").get_json()
    assert empty == {"epochs": [], "epoch": None, "layers": []}


def test_decision_boundary_of_a_2d_dataset(reader, make_run) -> None:
    run_id = make_run(epochs=8, status="running", weights=True)
    body = reader.get(f"/ui/data/runs/{run_id}/boundary?epoch=8").get_json()
    z = np.array(body["z"])
    assert body["epoch"] == 8 and z.shape == (80, 80) and ((z >= 0) & (z <= 1)).all()
    assert sorted(zip(body["points"]["x"], body["points"]["y"], body["points"]["label"])) == [
        (0.0, 0.0, 0), (0.0, 1.0, 1), (1.0, 0.0, 1), (1.0, 1.0, 0)]
    assert reader.get(f"/ui/data/runs/{run_id}/boundary?epoch=3").status_code == 404


def test_decision_boundary_of_a_perceptron_gives_its_classes(reader, make_run, Session, npz) -> None:
    run_id = make_run("or", epochs=3, status="running",
                      spec_changes={"dataset": {"name": "or"}, "model": {"type": "perceptron", "init": "zeros"}})
    with Session() as s, s.begin():
        repo.write_weights_many(session=s, run_id=run_id,
                                snapshots=[(3, npz([(np.array([[1.0], [1.0]]), np.array([-0.5]))]))])
    body = reader.get(f"/ui/data/runs/{run_id}/boundary").get_json()
    assert body["epoch"] == 3 and set(np.ravel(body["z"])) == {0.0, 1.0}


def test_large_layers_and_datasets_are_sampled_for_display(reader, make_run, Session, npz, monkeypatch) -> None:
    monkeypatch.setattr("trainyard.service.dashboard.data.MAX_HEATMAP_SIDE", 3)
    monkeypatch.setattr("trainyard.service.dashboard.data.MAX_POINTS_SHOWN", 50)
    moons = {"dataset": {"name": "moons", "n_samples": 400}}
    run_id = make_run("moons", epochs=2, status="running", spec_changes=moons)
    W1 = np.arange(8.0).reshape(2, 4)
    with Session() as s, s.begin():
        repo.write_weights_many(session=s, run_id=run_id,
                                snapshots=[(2, npz([(W1, np.zeros(4)), (np.ones((4, 1)), np.zeros(1))]))])
    layer = reader.get(f"/ui/data/runs/{run_id}/weights").get_json()["layers"][0]
    assert layer["shape"] == [2, 4] and layer["W"] == [[0.0, 2.0, 3.0], [4.0, 6.0, 7.0]]  # columns 0, 2, 3 of 4
    points = reader.get(f"/ui/data/runs/{run_id}/boundary").get_json()["points"]
    assert len(points["x"]) == len(points["label"]) == 50


def test_exports(reader, make_run) -> None:
    run_id = make_run(epochs=4, status="running", weights=True)
    response = reader.get(f"/ui/data/runs/{run_id}/export.csv")
    assert response.headers["Content-Disposition"] == f'attachment; filename="{run_id}-epochs.csv"'
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["epoch"] for row in rows] == ["1", "2", "3", "4"] and float(rows[1]["train_loss"]) == 0.5
    assert (rows[0]["weight_norm_1"], rows[0]["weight_norm_2"]) == ("1.01", "0.5")
    document = reader.get(f"/ui/data/runs/{run_id}/export.json").get_json()
    assert document["run"]["id"] == run_id and len(document["epochs"]) == 4
    npz = reader.get(f"/ui/data/runs/{run_id}/export.npz").get_data()
    with np.load(io.BytesIO(npz)) as arrays:
        assert sorted(arrays.files) == ["W1", "W2", "b1", "b2"]
    assert reader.get(f"/ui/data/runs/{make_run()}/export.npz").status_code == 404
