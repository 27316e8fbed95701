"""Tracked runs over the API: a client's run from its own loop (track, epochs with custom metrics, weights,
finish), its metrics in the epochs, curves, comparison and export, and every refusal."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from sqlalchemy import func, select

from trainyard.service.storage import repo
from trainyard.service.storage.models import Epoch, Metric, Run, Weights

PARAMS = {"model": {"hidden": [8, 4], "activation": "tanh"}, "optimizer": {"name": "sgd", "lr": 0.1}, "seed": 12345}


def _npz(**arrays) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _layers(rng=None) -> dict[str, np.ndarray]:
    rng = rng or np.random.default_rng(0)
    return {"W1": rng.normal(size=(2, 3)), "b1": np.zeros(3), "W2": rng.normal(size=(3, 1)), "b2": np.ones(1)}


def _track(api, **body):
    response = api.post("/api/runs/track", json={"name": "by hand", **body})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _log(api, run_id: str, epochs: list[dict]):
    return api.post(f"/api/runs/{run_id}/epochs", json=epochs)


def _counts(Session, run_id: str) -> tuple[int, int, int]:
    with Session() as s:
        return tuple(s.scalar(select(func.count()).select_from(model).where(model.run_id == run_id))
                     for model in (Epoch, Metric, Weights))


@pytest.fixture
def tracked(api) -> str:
    return _track(api, project="hand", params=PARAMS, tags=["numpy"], notes="a perceptron")["id"]


def test_life_cycle_track_epochs_weights_finish(api, reader, sent, Session):
    run = _track(api, project="hand", params=PARAMS, tags=["numpy"], notes="a perceptron")
    assert (run["kind"], run["status"], run["spec"], run["project"]) == ("tracked", "running", PARAMS, "hand")
    assert (run["epochs_total"], run["epochs_done"], run["attempts"], run["tags"]) == (0, 0, 0, ["numpy"])
    assert run["started_at"] is not None and run["finished_at"] is None
    run_id = run["id"]

    epochs = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.5 / e + (0.5 if e == 3 else 0), "val_accuracy": e / 10,
               "bleu": 20.0 + e, "val/f1": None if e == 2 else e / 5} for e in range(1, 5)]
    response = _log(api, run_id, epochs)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"written": 4, "epochs_done": 4}

    W = _layers()
    response = api.post(f"/api/runs/{run_id}/weights?epoch=4", data=_npz(**W),
                        headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json() == {"epoch": 4}
    weights = reader.get(f"/api/runs/{run_id}/weights").get_json()
    assert weights["epoch"] == 4 and np.allclose(weights["layers"][0]["W"], W["W1"])

    response = api.post(f"/api/runs/{run_id}/finish", json={"status": "succeeded", "error": None})
    assert response.status_code == 200, response.get_json()
    done = response.get_json()
    assert (done["status"], done["stop_reason"], done["error"], done["epochs_done"]) == (
        "succeeded", "finished by the client", None, 4)
    assert done["finished_at"] is not None
    assert done["summary"] == {"final_train_loss": 0.25, "final_val_loss": 1.5 / 4, "final_train_accuracy": None,
                               "final_val_accuracy": 0.4, "best_val_loss": 1.5 / 4, "best_val_accuracy": 0.4,
                               "best_epoch": 4}
    read = reader.get(f"/api/runs/{run_id}/epochs").get_json()["epochs"]
    assert [row["bleu"] for row in read] == [21.0, 22.0, 23.0, 24.0]
    assert [row["val/f1"] for row in read] == [0.2, None, 0.6, 0.8]
    assert list(read[0])[-2:] == ["bleu", "val/f1"]  # custom metrics after the built-in fields
    assert sent() == []  # never sent to a worker


def test_idempotency_key_makes_one_tracked_run(api, run_count, assert_error):
    key = {"Idempotency-Key": "track-1"}
    first = api.post("/api/runs/track", json={"name": "a", "params": {"lr": 0.1}}, headers=key)
    again = api.post("/api/runs/track", json={"name": "a", "params": {"lr": 0.1}}, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.get_json()["id"] == again.get_json()["id"] and run_count() == 1
    other = api.post("/api/runs/track", json={"name": "a", "params": {"lr": 0.2}}, headers=key)
    assert_error(other, 422, "idempotency_key_reused", "Idempotency-Key")


def test_epochs_are_idempotent_and_the_last_write_wins(api, reader, tracked, Session):
    assert _log(api, tracked, [{"epoch": 1, "train_loss": 0.9, "bleu": 1.0}, {"epoch": 2, "train_loss": 0.8}]
                ).get_json() == {"written": 2, "epochs_done": 2}
    again = _log(api, tracked, [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "val_loss": 0.7, "bleu": None},
                                {"epoch": 2, "val_loss": 0.6}])
    assert again.get_json() == {"written": 2, "epochs_done": 2}
    assert _counts(Session, tracked) == (2, 2, 0)
    rows = reader.get(f"/api/runs/{tracked}/epochs?fields=train_loss,val_loss,bleu").get_json()["epochs"]
    assert rows == [{"epoch": 1, "train_loss": 0.5, "val_loss": None, "bleu": 1.0},
                    {"epoch": 2, "train_loss": 0.8, "val_loss": 0.6, "bleu": None}]
    assert _log(api, tracked, [{"epoch": 1, "lr": 0.1}]).get_json() == {"written": 1, "epochs_done": 2}
    with Session() as s:
        run = s.get(Run, tracked)
        assert (run.epochs_done, run.final_val_loss, run.best_epoch) == (2, 0.6, 1)  # 0.5 train_loss < 0.6 val_loss


def test_custom_metrics_downsample_keep_their_spike(api, reader, tracked):
    epochs = [{"epoch": e, "train_loss": 1.0, "bleu": 100.0 if e == 437 else 1.0} for e in range(1, 1001)]
    assert _log(api, tracked, epochs).status_code == 200
    rows = reader.get(f"/api/runs/{tracked}/epochs?max_points=20&fields=bleu").get_json()["epochs"]
    assert len(rows) <= 20 and {"epoch": 437, "bleu": 100.0} in rows


def test_custom_metrics_compare_with_a_trained_run(api, reader, tracked, Session):
    trained = api.create_run()
    _log(api, tracked, [{"epoch": e, "train_loss": 1 / e, "bleu": float(e)} for e in range(1, 4)])
    with Session() as s, s.begin():
        repo.write_epochs(session=s, run_id=trained["id"], rows=[{"epoch": 1, "train_loss": 0.7}])
    response = reader.get(f"/api/compare?runs={tracked},{trained['id']}&fields=train_loss,bleu")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert [run["kind"] for run in body["runs"]] == ["tracked", "trained"]
    assert body["curves"][tracked] == {"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 1 / 3], "bleu": [1.0, 2.0, 3.0]}
    assert body["curves"][trained["id"]] == {"epoch": [1], "train_loss": [0.7], "bleu": [None]}
    differ = body["params"]["differ"]
    assert differ["optimizer.lr"] == [0.1, trained["spec"]["optimizer"]["lr"]]
    assert differ["model.activation"][0] == "tanh"
    assert differ["seed"] == [12345, trained["spec"]["seed"]]


def test_compare_and_epochs_refuse_a_metric_no_run_has(api, reader, tracked, assert_error):
    _log(api, tracked, [{"epoch": 1, "bleu": 1.0}])
    assert_error(reader.get(f"/api/compare?runs={tracked}&fields=rouge"), 400, "invalid_parameter", "fields")
    assert_error(reader.get(f"/api/compare?runs={tracked}&fields=weight_norms"), 400, "invalid_parameter", "fields")
    assert_error(reader.get(f"/api/runs/{tracked}/epochs?fields=rouge"), 400, "invalid_parameter", "fields")


def test_export_has_custom_metrics_after_the_built_ins(api, reader, tracked):
    _log(api, tracked, [{"epoch": 1, "train_loss": 0.5, "bleu": 2.5}, {"epoch": 2, "val/f1": 0.25}])
    response = reader.get(f"/api/runs/{tracked}/export?format=csv")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["epoch", *repo.EPOCH_METRICS, "bleu", "val/f1"]
    assert rows[1] == ["1", "0.5", "", "", "", "", "", "2.5", ""]
    assert rows[2] == ["2", "", "", "", "", "", "", "", "0.25"]
    exported = reader.get(f"/api/runs/{tracked}/export?format=json").get_json()
    assert exported["run"]["kind"] == "tracked"
    assert [(row["bleu"], row["val/f1"]) for row in exported["epochs"]] == [(2.5, None), (None, 0.25)]


def test_a_run_has_at_most_32_custom_metrics(api, tracked, assert_error, Session):
    first = {"epoch": 1, **{f"m{i}": float(i) for i in range(30)}}
    assert _log(api, tracked, [first]).status_code == 200
    error = assert_error(_log(api, tracked, [{"epoch": 2, "m0": 1.0, "a": 1.0}, {"epoch": 3, "b": 1.0, "c": 1.0}]),
                         422, "invalid", "1.c")
    assert "at most 32" in error["message"]
    assert _counts(Session, tracked) == (1, 30, 0)  # nothing of the refused request
    assert _log(api, tracked, [{"epoch": 2, "a": 1.0, "b": 1.0, "m3": 2.0}]).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], ""),
        ({"epoch": 1}, ""),
        ([{"train_loss": 1.0}], "0.epoch"),
        ([{"epoch": 0}], "0.epoch"),
        ([{"epoch": 1_000_001}], "0.epoch"),
        ([{"epoch": 1.5}], "0.epoch"),
        ([{"epoch": 1}, {"epoch": 2, "train_loss": "low"}], "1.train_loss"),
        ([{"epoch": 1, "lr": True}], "0.lr"),
        ([{"epoch": 1, "bleu": [1.0]}], "0.bleu"),
        ([{"epoch": 1, "bleu": "1"}], "0.bleu"),
        ([{"epoch": 1, "weight_norms": [1.0]}], "0.weight_norms"),
        ([{"epoch": 1, "recorded_at": 1.0}], "0.recorded_at"),
        ([{"epoch": 1, "9lives": 1.0}], "0.9lives"),
        ([{"epoch": 1, "with space": 1.0}], "0.with space"),
        ([{"epoch": 1, "x" * 65: 1.0}], "0." + "x" * 65),
    ],
)
def test_bad_epochs_are_refused_naming_the_field(api, tracked, assert_error, Session, body, field):
    response = _log(api, tracked, body)
    assert response.status_code in (400, 422)
    error = assert_error(response, response.status_code)
    if field:
        assert field in [f["field"] for f in error["fields"]], error
    assert _counts(Session, tracked) == (0, 0, 0)


def test_non_finite_epoch_values_are_refused(api, tracked, assert_error, Session):
    response = api.post(f"/api/runs/{tracked}/epochs", data='[{"epoch": 1, "bleu": NaN}]',
                        headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422)
    assert _counts(Session, tracked) == (0, 0, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "a", "params": [1, 2]}, "params"),
        ({"name": "a", "params": {"blob": "x" * 70_000}}, "params"),
        ({"name": "a", "spec": {}}, "spec"),
        ({"name": "a", "tags": "one"}, "tags"),
        ({"name": "a", "project": ""}, "project"),
    ],
)
def test_bad_track_requests_are_refused_naming_the_field(api, assert_error, run_count, body, field):
    assert_error(api.post("/api/runs/track", json=body), 422, field=field)
    assert run_count() == 0


def test_tracking_needs_a_write_token(reader, assert_error, run_count):
    assert_error(reader.post("/api/runs/track", json={"name": "a"}), 403)
    assert run_count() == 0


def test_a_trained_run_refuses_tracked_calls(api, assert_error, Session):
    run_id = api.create_run()["id"]
    assert_error(_log(api, run_id, [{"epoch": 1, "train_loss": 1.0}]), 409, "not_tracking")
    assert_error(api.post(f"/api/runs/{run_id}/weights?epoch=1", data=_npz(**_layers()),
                          headers={"Content-Type": "application/octet-stream"}), 409, "not_tracking")
    assert_error(api.post(f"/api/runs/{run_id}/finish", json={"status": "succeeded"}), 409, "not_tracking")
    assert _counts(Session, run_id) == (0, 0, 0)
    with Session() as s:
        assert s.get(Run, run_id).status == "queued"


def test_a_finished_tracked_run_refuses_more(api, tracked, assert_error, Session):
    failed = api.post(f"/api/runs/{tracked}/finish", json={"status": "failed", "error": "out of memory"})
    assert failed.status_code == 200
    assert (failed.get_json()["status"], failed.get_json()["stop_reason"], failed.get_json()["error"]) == (
        "failed", "failed: out of memory", "out of memory")
    again = api.post(f"/api/runs/{tracked}/finish", json={"status": "failed", "error": "out of memory"})
    assert again.status_code == 200 and again.get_json() == failed.get_json()  # a retried finish
    assert_error(api.post(f"/api/runs/{tracked}/finish", json={"status": "succeeded"}), 409, "not_tracking")
    assert_error(_log(api, tracked, [{"epoch": 1, "train_loss": 1.0}]), 409, "not_tracking")
    assert_error(api.post(f"/api/runs/{tracked}/weights?epoch=1", data=_npz(**_layers()),
                          headers={"Content-Type": "application/octet-stream"}), 409, "not_tracking")
    assert _counts(Session, tracked) == (0, 0, 0)


def test_unknown_runs_are_404(api, assert_error):
    missing = "0" * 32
    assert_error(_log(api, missing, [{"epoch": 1}]), 404)
    assert_error(api.post(f"/api/runs/{missing}/weights?epoch=1", data=_npz(**_layers()),
                          headers={"Content-Type": "application/octet-stream"}), 404)
    assert_error(api.post(f"/api/runs/{missing}/finish", json={"status": "succeeded"}), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "cancelled"}, "status"),
        ({"status": "succeeded", "error": "but why"}, "error"),
        ({"status": "failed", "reason": "x"}, "reason"),
    ],
)
def test_bad_finish_is_refused(api, tracked, assert_error, Session, body, field):
    assert_error(api.post(f"/api/runs/{tracked}/finish", json=body), 422, field=field)
    with Session() as s:
        assert s.get(Run, tracked).status == "running"


@pytest.mark.parametrize(
    ("data", "query", "status", "field"),
    [
        (b"not a zip", "epoch=1", 422, "body"),
        (_npz(W1=np.zeros((2, 3))), "epoch=1", 422, "body"),
        (_npz(W1=np.zeros((2, 3)), b1=np.zeros(2)), "epoch=1", 422, "body"),
        (_npz(W1=np.zeros((2, 3), dtype=np.int64), b1=np.zeros(3, dtype=np.int64)), "epoch=1", 422, "body"),
        (_npz(W1=np.zeros((2, 3)), b1=np.zeros(3), W2=np.zeros((4, 1)), b2=np.zeros(1)), "epoch=1", 422, "body"),
        (_npz(**_layers()), "", 400, "epoch"),
        (_npz(**_layers()), "epoch=0", 400, "epoch"),
        (_npz(**_layers()), "epoch=x", 400, "epoch"),
    ],
)
def test_bad_weights_are_refused(api, tracked, assert_error, Session, data, query, status, field):
    response = api.post(f"/api/runs/{tracked}/weights?{query}", data=data,
                        headers={"Content-Type": "application/octet-stream"})
    assert_error(response, status, field=field)
    assert _counts(Session, tracked) == (0, 0, 0)


def test_weights_need_an_octet_stream(api, tracked, assert_error):
    assert_error(api.post(f"/api/runs/{tracked}/weights?epoch=1", json={"W1": []}), 415)


def test_weights_sent_again_replace_the_first(api, reader, tracked):
    for seed in (1, 2):
        response = api.post(f"/api/runs/{tracked}/weights?epoch=3", data=_npz(**_layers(np.random.default_rng(seed))),
                            headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 201
    got = reader.get(f"/api/runs/{tracked}/weights?epoch=3").get_json()
    assert np.allclose(got["layers"][0]["W"], _layers(np.random.default_rng(2))["W1"])


def test_ten_thousand_epochs_of_many_metrics_fit_in_one_request(api, reader, tracked):
    """Over the 1 MiB other JSON bodies may take: the epochs route takes up to 16 MiB."""
    epochs = [{"epoch": e, "train_loss": 1 / e, "val_loss": 2 / e, "lr": 0.001, "seconds": 0.012345,
               **{f"metric_{k}": e / 7 for k in range(8)}} for e in range(1, 10_001)]
    response = _log(api, tracked, epochs)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"written": 10_000, "epochs_done": 10_000}
    assert _log(api, tracked, epochs + [{"epoch": 1}]).status_code == 422  # 10,001 epochs: refused


def test_cancelling_a_tracked_run_ends_it_at_once(api, tracked, assert_error, sent):
    _log(api, tracked, [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}])
    response = api.post(f"/api/runs/{tracked}/cancel")
    assert response.status_code == 200
    run = response.get_json()
    assert (run["status"], run["stop_reason"], run["finished_at"] is not None) == (
        "cancelled", "cancelled at epoch 2", True)
    assert_error(_log(api, tracked, [{"epoch": 3, "train_loss": 0.1}]), 409, "not_tracking")
    assert sent() == []


def test_tracked_runs_group_over_seeds_with_their_custom_metrics(api, reader):
    ids = []
    for seed, scale in ((1, 1.0), (2, 3.0)):
        run_id = _track(api, params={"lr": 0.1, "seed": seed})["id"]
        _log(api, run_id, [{"epoch": e, "train_loss": scale / e, "bleu": scale * e} for e in (1, 2)])
        ids.append(run_id)
    body = reader.get(f"/api/compare?runs={','.join(ids)}&group=seed&fields=train_loss,bleu").get_json()
    (group,) = body["groups"]
    assert group["runs"] == ids and group["values"] == [1, 2]
    assert group["curves"]["bleu"]["mean"] == [2.0, 4.0]
    assert group["curves"]["train_loss"]["max"] == [3.0, 1.5]
