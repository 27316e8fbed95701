"""A run's epochs (since, fields, downsampling) and weights (JSON or .npz)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from trainyard.service.storage import repo


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture
def run_id(api) -> str:
    return api.create_run()["id"]


@pytest.fixture
def with_epochs(Session, run_id) -> str:
    rows = [
        {"epoch": n, "train_loss": 1.0 / n, "val_loss": 2.0 / n, "lr": 0.1, "weight_norms": [float(n), 1.0]}
        for n in range(1, 101)
    ]
    rows[49]["train_loss"] = 50.0  # a spike downsampling must keep
    with Session() as s, s.begin():
        repo.write_epochs(session=s, run_id=run_id, rows=rows)
    return run_id


def test_epochs_all(reader, with_epochs):
    response = reader.get(f"/api/runs/{with_epochs}/epochs")

    assert response.status_code == 200
    epochs = response.get_json()["epochs"]
    assert [e["epoch"] for e in epochs] == list(range(1, 101))
    assert epochs[1]["train_loss"] == 0.5 and epochs[1]["weight_norms"] == [2.0, 1.0]
    assert epochs[0]["train_accuracy"] is None


def test_epochs_since_and_fields(reader, with_epochs):
    epochs = reader.get(f"/api/runs/{with_epochs}/epochs?since=97&fields=val_loss,lr").get_json()["epochs"]

    assert epochs == [
        {"epoch": 98, "val_loss": 2.0 / 98, "lr": 0.1},
        {"epoch": 99, "val_loss": 2.0 / 99, "lr": 0.1},
        {"epoch": 100, "val_loss": 2.0 / 100, "lr": 0.1},
    ]


def test_epochs_downsampled_keep_the_spike(reader, with_epochs):
    epochs = reader.get(f"/api/runs/{with_epochs}/epochs?fields=train_loss&max_points=10").get_json()["epochs"]

    assert 2 <= len(epochs) <= 10
    assert epochs[0]["epoch"] == 1 and epochs[-1]["epoch"] == 100
    assert {"epoch": 50, "train_loss": 50.0} in epochs


def test_epochs_of_a_run_without_any(reader, run_id):
    assert reader.get(f"/api/runs/{run_id}/epochs").get_json() == {"epochs": [], "next": None}


def test_epochs_come_a_page_at_a_time(reader, run_id, Session):
    """Without max_points an answer holds at most `limit` epochs (1,000 by default, 10,000 at most): a run of a
    million epochs is read a page at a time, never answered whole."""
    with Session() as s, s.begin():
        repo.write_epochs(session=s, run_id=run_id, rows=[{"epoch": n, "train_loss": 1.0 / n} for n in range(1, 2501)])

    first = reader.get(f"/api/runs/{run_id}/epochs?fields=train_loss").get_json()
    assert len(first["epochs"]) == 1000 and first["epochs"][-1]["epoch"] == first["next"] == 1000
    seen, after = [], 0
    while after is not None:
        page = reader.get(f"/api/runs/{run_id}/epochs?fields=train_loss&limit=700&since={after}").get_json()
        assert len(page["epochs"]) <= 700
        seen += page["epochs"]
        after = page["next"]
    assert [row["epoch"] for row in seen] == list(range(1, 2501))
    assert reader.get(f"/api/runs/{run_id}/epochs?since=1500&limit=1000").get_json()["next"] is None  # exactly
    downsampled = reader.get(f"/api/runs/{run_id}/epochs?max_points=100&limit=1").get_json()
    assert len(downsampled["epochs"]) == 100 and downsampled["next"] is None  # max_points bounds it instead


def test_epochs_of_unknown_run_is_404(reader, assert_error):
    assert_error(reader.get(f"/api/runs/{'0' * 32}/epochs"), 404, "not_found")


@pytest.mark.parametrize(
    "query, field",
    [
        ("since=x", "since"),
        ("since=-1", "since"),
        ("since=1e3", "since"),
        ("since=99999999999", "since"),
        ("fields=", "fields"),
        ("fields=train_loss,colour", "fields"),
        ("fields=epoch", "fields"),
        ("max_points=1", "max_points"),
        ("max_points=0", "max_points"),
        ("max_points=many", "max_points"),
        ("max_points=1000000", "max_points"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
    ],
)
def test_epochs_bad_parameter_is_400(reader, run_id, assert_error, query, field):
    assert_error(reader.get(f"/api/runs/{run_id}/epochs?{query}"), 400, "invalid_parameter", field)


# --------------------------------------------------------------------------- weights


@pytest.fixture
def with_weights(Session, run_id) -> str:
    rng = np.random.default_rng(0)
    with Session() as s, s.begin():
        for epoch in (1, 5):
            arrays = {"W1": rng.normal(size=(2, 3)), "b1": np.zeros(3), "W2": rng.normal(size=(3, 1)), "b2": np.ones(1)}
            repo.write_weights_many(session=s, run_id=run_id, snapshots=[(epoch, _npz(**arrays))])
    return run_id


def test_weights_latest_as_json(reader, with_weights, Session):
    response = reader.get(f"/api/runs/{with_weights}/weights")

    assert response.status_code == 200
    body = response.get_json()
    assert body["epoch"] == 5
    with Session() as s:
        _, data = repo.get_weights(session=s, run_id=with_weights, epoch=5)
    stored = np.load(io.BytesIO(data))
    assert len(body["layers"]) == 2
    for i, layer in enumerate(body["layers"], start=1):
        np.testing.assert_array_equal(np.array(layer["W"]), stored[f"W{i}"])
        np.testing.assert_array_equal(np.array(layer["b"]), stored[f"b{i}"])


def test_weights_of_an_epoch(reader, with_weights):
    body = reader.get(f"/api/runs/{with_weights}/weights?epoch=1").get_json()

    assert body["epoch"] == 1 and np.array(body["layers"][0]["W"]).shape == (2, 3)


def test_weights_as_npz(reader, with_weights, Session):
    response = reader.get(f"/api/runs/{with_weights}/weights?epoch=1&format=npz")

    assert response.status_code == 200 and response.mimetype == "application/octet-stream"
    assert f'filename="{with_weights}-epoch1.npz"' in response.headers["Content-Disposition"]
    with Session() as s:
        assert response.get_data() == repo.get_weights(session=s, run_id=with_weights, epoch=1)[1]


def test_non_finite_weights_are_null_in_json(reader, Session, run_id):
    arrays = {"W1": np.array([[np.nan, 1.0], [np.inf, -np.inf]]), "b1": np.array([0.5, np.nan])}
    with Session() as s, s.begin():
        repo.write_weights_many(session=s, run_id=run_id, snapshots=[(3, _npz(**arrays))])

    response = reader.get(f"/api/runs/{run_id}/weights")

    assert response.status_code == 200
    assert response.get_json()["layers"] == [{"W": [[None, 1.0], [None, None]], "b": [0.5, None]}]


def test_weights_too_large_for_json_are_a_413_pointing_at_npz(reader, Session, run_id, assert_error):
    from trainyard.service.api.runs import MAX_WEIGHTS_JSON_BYTES

    big = np.zeros((MAX_WEIGHTS_JSON_BYTES // 8 // 1024 + 1, 1024))  # just past the limit of float64 values
    with Session() as s, s.begin():
        repo.write_weights_many(session=s, run_id=run_id, snapshots=[(1, _uncompressed(W1=big, b1=np.zeros(1024)))])

    error = assert_error(reader.get(f"/api/runs/{run_id}/weights"), 413, "too_large", "format")
    assert "format=npz" in error["message"]
    with reader.get(f"/api/runs/{run_id}/weights?format=npz") as response:
        assert response.status_code == 200 and np.load(io.BytesIO(response.get_data()))["W1"].shape == big.shape


def _uncompressed(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_weights_missing_is_404(reader, run_id, with_weights, assert_error):
    assert_error(reader.get(f"/api/runs/{run_id}/weights?epoch=2"), 404, "no_weights")


def test_weights_of_a_run_without_any_is_404(reader, run_id, assert_error):
    assert_error(reader.get(f"/api/runs/{run_id}/weights"), 404, "no_weights")
    assert_error(reader.get(f"/api/runs/{run_id}/weights?format=npz"), 404, "no_weights")


def test_weights_of_unknown_run_is_404(reader, assert_error):
    assert_error(reader.get(f"/api/runs/{'0' * 32}/weights"), 404, "not_found")


@pytest.mark.parametrize(
    "query, field",
    [
        ("epoch=last", "epoch"),
        ("epoch=-1", "epoch"),
        ("epoch=1.0", "epoch"),
        ("epoch=", "epoch"),
        ("format=csv", "format"),
    ],
)
def test_weights_bad_parameter_is_400(reader, run_id, assert_error, query, field):
    assert_error(reader.get(f"/api/runs/{run_id}/weights?{query}"), 400, "invalid_parameter", field)


def test_export_csv_and_json(reader, with_epochs, assert_error):
    response = reader.get(f"/api/runs/{with_epochs}/export")  # CSV by default
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{with_epochs}-epochs.csv"'
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    norms = ["weight_norm_1", "weight_norm_2", "grad_norm_1", "grad_norm_2"]  # a column per layer, grads empty here
    assert list(rows[0]) == ["epoch", *repo.EPOCH_METRICS, *norms]
    assert [int(row["epoch"]) for row in rows] == list(range(1, 101))
    assert float(rows[49]["train_loss"]) == 50.0 and rows[0]["train_accuracy"] == ""
    assert (rows[1]["weight_norm_1"], rows[1]["weight_norm_2"], rows[1]["grad_norm_1"]) == ("2.0", "1.0", "")

    document = reader.get(f"/api/runs/{with_epochs}/export?format=json").get_json()
    assert document["run"]["id"] == with_epochs
    assert document["epochs"] == reader.get(f"/api/runs/{with_epochs}/epochs").get_json()["epochs"]

    assert_error(reader.get(f"/api/runs/{with_epochs}/export?format=xml"), 400, field="format")
    assert_error(reader.get(f"/api/runs/{'0' * 32}/export"), 404, code="not_found")
