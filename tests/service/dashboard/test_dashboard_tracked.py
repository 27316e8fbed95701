"""Tracked runs on the dashboard: their page, its custom metric charts' data, the weights heatmap, and a
comparison with a trained run."""

from __future__ import annotations

import numpy as np
import pytest
from flask.testing import FlaskClient

from trainyard.service.storage import repo

#: Free params, shaped as no spec is: the pages show them as they are.
PARAMS = {"dataset": "my own", "model": ["not", "a", "spec"], "optimizer": {"name": "sgd", "lr": "fast"}, "seed": 1}


@pytest.fixture
def reader(client: FlaskClient, logged_in) -> FlaskClient:
    logged_in("read")
    return client


@pytest.fixture
def tracked(Session, npz) -> str:
    with Session() as s, s.begin():
        run_id = repo.create_tracked_run(session=s, name="by hand", params=PARAMS, tags=[], notes="").id
        repo.write_tracked_epochs(session=s, run_id=run_id, rows=[
            {"epoch": e, "train_loss": 1 / e, "bleu": float(e), "val/f1": e / 10} for e in range(1, 6)])
        rng = np.random.default_rng(0)
        repo.write_weights_many(session=s, run_id=run_id, snapshots=[
            (5, npz([(rng.normal(size=(2, 4)), np.zeros(4)), (rng.normal(size=(4, 1)), np.zeros(1))]))])
    return run_id


def test_a_tracked_runs_page_and_its_custom_curves(reader, tracked) -> None:
    page = reader.get(f"/runs/{tracked}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="custom-charts"' in html and "data-boundary" not in html and "my own" in html
    assert "epoch 5 of" not in html and "epoch 5" in html
    body = reader.get(f"/ui/data/runs/{tracked}/series").get_json()
    assert body["custom"] == ["bleu", "val/f1"]
    assert body["curves"]["bleu"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    poll = reader.get(f"/ui/data/poll?runs={tracked}&since=3&fields=train_loss,bleu,val%2Ff1").get_json()
    assert poll["epochs"][tracked] == {"epoch": [4, 5], "train_loss": [0.25, 0.2], "bleu": [4.0, 5.0],
                                       "val/f1": [0.4, 0.5]}
    weights = reader.get(f"/ui/data/runs/{tracked}/weights").get_json()
    assert weights["epoch"] == 5 and len(weights["layers"]) == 2
    assert reader.get(f"/ui/data/runs/{tracked}/boundary?epoch=5").status_code == 409


def test_a_tracked_run_compares_with_a_trained_one(reader, tracked, make_run) -> None:
    trained = make_run(epochs=3, total=3)
    body = reader.get(f"/ui/data/compare?runs={tracked},{trained}").get_json()
    assert body["custom"] == ["bleu", "val/f1"]
    assert body["curves"][tracked]["bleu"] == pytest.approx([1, 2, 3, 4, 5])
    assert body["curves"][trained]["bleu"] == [None, None, None]
    assert reader.get(f"/compare?runs={tracked},{trained}").status_code == 200
    assert reader.get("/runs").status_code == 200
