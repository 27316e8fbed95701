"""The runs endpoints: create, read, list, change, delete and cancel, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from trainyard.service.storage import repo


def _parse_time(value: str) -> dt.datetime:
    assert value.endswith("Z")
    return dt.datetime.fromisoformat(value)


def test_create_run_stores_it_and_sends_its_id(api, spec, sent, Session):
    response = api.post("/api/runs", json=spec)

    assert response.status_code == 201
    run = response.get_json()
    assert response.headers["Location"] == f"/api/runs/{run['id']}"
    assert run["status"] == "queued"
    assert (run["name"], run["tags"], run["notes"]) == ("xor-tanh", ["seed-example"], "first try")
    assert run["epochs_total"] == 200
    optimizer = {"name": "sgd", "lr": 0.5, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}
    assert run["spec"]["optimizer"] == optimizer
    assert run["spec"]["seed"] == 3 and run["spec"]["version"] == 1
    assert run["epochs_done"] == 0 and run["error"] is None and run["sweep_id"] is None
    assert run["started_at"] is None and run["finished_at"] is None
    assert _parse_time(run["created_at"]).tzinfo == dt.timezone.utc
    assert sent() == [("worker.tasks.train_run", [run["id"]])]
    with Session() as s:
        stored = repo.get_run(session=s, run_id=run["id"])
        assert stored.seed == 3 and stored.spec == run["spec"]


def test_create_run_fills_the_defaults_of_a_minimal_spec(api, sent):
    run = api.create_run({"dataset": {"name": "or"}})

    assert run["name"] == "run" and run["tags"] == [] and run["epochs_total"] == 100
    assert run["spec"]["model"] == {"type": "mlp", "hidden": [], "init": "xavier"}
    assert len(sent()) == 1
    # nothing is chosen silently: the answer says what the spec left out and what it took
    assert run["defaults"]["epochs"] == 100 and run["defaults"]["batch_size"] == 32
    assert run["defaults"]["model"] == run["spec"]["model"] and "dataset" not in run["defaults"]
    assert "defaults" not in api.get(f"/api/runs/{run['id']}").get_json()  # a run's own document


def test_an_unknown_field_suggests_the_nearest_known_one(api, spec, run_count, assert_error):
    misspelt = {key: value for key, value in spec.items() if key != "optimizer"} | {"optimiser": spec["optimizer"]}
    error = assert_error(api.post("/api/runs", json=misspelt), 422, "invalid", "optimiser")
    assert {"field": "optimiser", "message": 'unknown field; did you mean "optimizer"?'} in error["fields"]
    nested = spec | {"dataset": {"name": "xor", "tset_fraction": 0.2}}
    error = assert_error(api.post("/api/runs", json=nested), 422, "invalid", "dataset.tset_fraction")
    assert 'did you mean "test_fraction"?' in error["message"]
    sweep = {"name": "s", "spec": spec | {"epoch": 3}, "method": "grid", "space": {"seed": [1]}}
    error = assert_error(api.post("/api/sweeps", json=sweep), 422, "invalid", "spec.epoch")
    assert 'did you mean "epochs"?' in error["message"]
    assert "did you mean" not in assert_error(api.post("/api/runs", json=spec | {"zzz": 1}), 422)["message"]
    assert run_count() == 0


def test_an_idempotency_key_makes_one_run_however_often_it_is_sent(api, spec, sent, run_count, assert_error):
    key = {"Idempotency-Key": "c0ffee-1"}
    first = api.post("/api/runs", json=spec, headers=key)
    again = api.post("/api/runs", json=spec, headers=key)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json() == first.get_json() and again.headers["Location"] == first.headers["Location"]
    assert run_count() == 1 and len(sent()) == 1  # stored and sent once
    assert api.post("/api/runs", json=spec, headers={"Idempotency-Key": "c0ffee-2"}).status_code == 201
    assert run_count() == 2
    other = dict(spec, epochs=7)
    assert_error(api.post("/api/runs", json=other, headers=key), 422, "idempotency_key_reused", "Idempotency-Key")
    for bad in ("", "a b", "é", "k" * 201):
        assert_error(api.post("/api/runs", json=spec, headers={"Idempotency-Key": bad}), 400, field="Idempotency-Key")
    assert run_count() == 2


def test_two_requests_with_one_key_at_the_same_moment_make_one_run(api, spec, run_count, monkeypatch):
    """The second request looks the key up before the first has committed, then meets its row on insert."""
    first = api.post("/api/runs", json=spec, headers={"Idempotency-Key": "race"}).get_json()
    monkeypatch.setattr(repo, "get_run_by_idempotency_key", _late(repo.get_run_by_idempotency_key))
    again = api.post("/api/runs", json=spec, headers={"Idempotency-Key": "race"})

    assert again.status_code == 201 and again.get_json()["id"] == first["id"]
    assert run_count() == 1


def _late(lookup):
    """``lookup``, which misses the first time, as it does while the other request's transaction is open."""
    calls = []

    def late(**kwargs):
        calls.append(kwargs)
        return None if len(calls) == 1 else lookup(**kwargs)

    return late


def test_create_run_with_an_uploaded_dataset(api, spec, Session):
    with Session() as s, s.begin():
        dataset = repo.create_dataset(
            session=s,
            name="d",
            filename="d.csv",
            content=b"x,y\n1,0\n",
            target="y",
            task="classification",
            n_samples=1,
            n_features=1,
            classes=[0],
        )
    spec["dataset"] = {"upload": dataset.id}

    run = api.create_run(spec)

    assert run["spec"]["dataset"] == {"upload": dataset.id, "test_fraction": 0.2, "standardize": False}


def test_create_run_refuses_an_unknown_upload(api, spec, sent, run_count, assert_error):
    spec["dataset"] = {"upload": "nosuchdataset"}

    assert_error(api.post("/api/runs", json=spec), 422, "invalid", "dataset.upload")
    assert run_count() == 0 and sent() == []


def test_get_run(api, reader):
    created = api.create_run()

    response = reader.get(f"/api/runs/{created['id']}")

    assert response.status_code == 200
    assert response.get_json() == {key: value for key, value in created.items() if key != "defaults"}


def test_get_run_shows_progress_and_summary(api, Session):
    run_id = api.create_run()["id"]
    with Session() as s, s.begin():
        repo.claim_run(session=s, run_id=run_id, worker="w1", lease_seconds=60)
        repo.write_epochs(session=s, run_id=run_id, rows=[{"epoch": 1, "train_loss": 0.5}, {"epoch": 2}])
        repo.finish_run(
            session=s,
            run_id=run_id,
            status="failed",
            error="diverged at epoch 3",
            summary={"final_train_loss": 0.25, "best_epoch": 2},
            worker="w1",
        )

    run = api.get(f"/api/runs/{run_id}").get_json()

    assert run["status"] == "failed" and run["error"] == "diverged at epoch 3" and run["epochs_done"] == 2
    assert _parse_time(run["started_at"]) <= _parse_time(run["finished_at"])
    assert run["summary"] == {
        "final_train_loss": 0.25,
        "final_val_loss": None,
        "final_train_accuracy": None,
        "final_val_accuracy": None,
        "best_val_loss": None,
        "best_val_accuracy": None,
        "best_epoch": 2,
    }


@pytest.mark.parametrize("run_id", ["0" * 32, "f" * 32])
def test_get_unknown_run_is_404(api, assert_error, run_id):
    assert_error(api.get(f"/api/runs/{run_id}"), 404, "not_found")


@pytest.mark.parametrize("path", ["/api/runs/nope", "/api/runs/%00", "/api/runs/" + "A" * 32, "/api/runs/" + "0" * 33])
def test_malformed_run_id_is_404(api, assert_error, path):
    assert_error(api.get(path), 404, "not_found")
    assert_error(api.patch(path, json={"name": "x"}), 404, "not_found")
    assert_error(api.delete(path), 404, "not_found")


# --------------------------------------------------------------------------- list


def test_list_runs_newest_first_with_pages(api, reader):
    ids = [api.create_run()["id"] for _ in range(5)]

    first = reader.get("/api/runs?limit=2").get_json()
    second = reader.get(f"/api/runs?limit=2&cursor={first['next']}").get_json()
    third = reader.get(f"/api/runs?limit=2&cursor={second['next']}").get_json()

    pages = [first, second, third]
    assert [run["id"] for page in pages for run in page["runs"]] == ids[::-1]
    assert third["next"] is None


def test_list_runs_filters(api, reader, spec):
    xor = api.create_run(spec)
    spec |= {"name": "Big OR", "tags": ["other"], "dataset": {"name": "or"}}
    other = api.create_run(spec)
    api.post(f"/api/runs/{other['id']}/cancel")

    def ids(query: str) -> list[str]:
        response = reader.get(f"/api/runs?{query}")
        assert response.status_code == 200, response.get_json()
        return [run["id"] for run in response.get_json()["runs"]]

    assert ids("status=cancelled") == [other["id"]]
    assert ids("status=queued") == [xor["id"]]
    assert ids("tag=seed-example") == [xor["id"]]
    assert ids("tag=nothing") == []
    assert ids("q=big") == [other["id"]]
    assert ids("sort=name") == [other["id"], xor["id"]]
    assert ids("sort=-name") == [xor["id"], other["id"]]
    assert ids("sweep=" + "0" * 32) == []
    assert sorted(ids("sort=-best_val_loss&limit=500")) == sorted([other["id"], xor["id"]])


def test_list_runs_empty(reader):
    assert reader.get("/api/runs").get_json() == {"runs": [], "next": None}


@pytest.mark.parametrize(
    "query, field",
    [
        ("status=done", "status"),
        ("status=", "status"),
        ("limit=ten", "limit"),
        ("limit=0", "limit"),
        ("limit=-3", "limit"),
        ("limit=1.5", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("sort=colour", "sort"),
        ("sort=-", "sort"),
        ("sort=", "sort"),
        ("cursor=garbage", "cursor"),
        ("cursor=", "cursor"),
        ("q=%00", "q"),
        ("tag=a%00b", "tag"),
        ("sweep=%00", "sweep"),
    ],
)
def test_list_runs_bad_parameter_is_400(reader, assert_error, query, field):
    assert_error(reader.get(f"/api/runs?{query}"), 400, "invalid_parameter", field)


def test_list_runs_cursor_of_another_sort_is_400(api, reader, assert_error):
    for _ in range(3):
        api.create_run()
    cursor = reader.get("/api/runs?limit=1").get_json()["next"]

    assert_error(reader.get(f"/api/runs?sort=name&cursor={cursor}"), 400, "invalid_parameter", "cursor")


def _cursor(*parts) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "query",
    [
        "sort=epochs_done&cursor=" + _cursor("epochs_done", 10**30, "a"),
        "sort=-epochs_done&cursor=" + _cursor("-epochs_done", -(10**30), "a"),
        "sort=best_epoch&cursor=" + _cursor("best_epoch", 2**63, "a"),
        "cursor=" + _cursor("-created_at", "0001-01-01T00:00:00+14:00", "a"),
        "cursor=" + _cursor("-created_at", "2020-01-01T00:00:00", "a"),
        "sort=name&cursor=" + _cursor("name", 5, "a"),
        "cursor=" + _cursor("-created_at", "2020-01-01T00:00:00+00:00"),
        "cursor=" + base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_list_runs_crafted_cursor_is_400(api, reader, assert_error, query):
    api.create_run()

    assert_error(reader.get(f"/api/runs?{query}"), 400, "invalid_parameter", "cursor")


@pytest.mark.parametrize(
    "query",
    [
        "cursor=" + _cursor("-created_at", "2020-01-01T00:00:00+00:00", "a\u0000b"),
        "sort=name&cursor=" + _cursor("name", "a\u0000", "a"),
    ],
)
def test_list_runs_cursor_with_nul_is_never_5xx(api, reader, assert_error, query):
    """PostgreSQL refuses NUL characters (400); SQLite compares them like any other (200)."""
    api.create_run()

    response = reader.get(f"/api/runs?{query}")

    assert response.status_code == 200 or assert_error(response, 400, "invalid_parameter", "cursor")


def test_list_runs_harmless_crafted_cursors_work(api, reader):
    run = api.create_run()

    far = reader.get("/api/runs?cursor=" + _cursor("-created_at", "9999-12-31T23:59:59+00:00", "f" * 32))
    huge = reader.get("/api/runs?sort=final_val_loss&cursor=" + _cursor("final_val_loss", 1e308, "a" * 32))

    assert far.status_code == 200 and [r["id"] for r in far.get_json()["runs"]] == [run["id"]]
    assert huge.status_code == 200


# --------------------------------------------------------------------------- patch


def test_patch_changes_name_tags_notes_not_the_spec(api, reader):
    created = api.create_run()

    response = api.patch(f"/api/runs/{created['id']}", json={"name": "renamed", "tags": ["a", "b", "a"], "notes": ""})

    assert response.status_code == 200
    run = response.get_json()
    assert (run["name"], run["tags"], run["notes"]) == ("renamed", ["a", "b"], "")
    assert run["spec"] == created["spec"]
    assert reader.get(f"/api/runs/{created['id']}").get_json() == run


def test_patch_with_only_some_fields_keeps_the_others(api):
    created = api.create_run()

    run = api.patch(f"/api/runs/{created['id']}", json={"notes": "better"}).get_json()

    assert (run["name"], run["tags"], run["notes"]) == (created["name"], created["tags"], "better")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": 5}, "name"),
        ({"name": None}, "name"),
        ({"name": "a\u0000b"}, "name"),
        ({"tags": "a"}, "tags"),
        ({"tags": [1]}, "tags.0"),
        ({"tags": [""]}, "tags.0"),
        ({"tags": ["t"] * 33}, "tags"),
        ({"tags": ["x" * 65]}, "tags.0"),
        ({"notes": 1}, "notes"),
        ({"notes": "x" * 10_001}, "notes"),
        ({"spec": {}}, "spec"),
        ({"status": "succeeded"}, "status"),
        ([], "body"),
        ("name", "body"),
    ],
)
def test_patch_invalid_body_is_422_and_changes_nothing(api, assert_error, body, field):
    created = api.get(f"/api/runs/{api.create_run()['id']}").get_json()

    assert_error(api.patch(f"/api/runs/{created['id']}", json=body), 422, "invalid", field)
    assert api.get(f"/api/runs/{created['id']}").get_json() == created


def test_patch_unknown_run_is_404(api, assert_error):
    assert_error(api.patch(f"/api/runs/{'0' * 32}", json={"name": "x"}), 404, "not_found")


def test_patch_needs_json(api, assert_error):
    created = api.create_run()

    assert_error(api.patch(f"/api/runs/{created['id']}", data="name=x"), 415, "unsupported_media_type")
    path = f"/api/runs/{created['id']}"
    assert_error(api.patch(path, data="{", content_type="application/json"), 400, "bad_json")


# --------------------------------------------------------------------------- delete


def test_delete_run_with_its_data(api, Session, assert_error):
    run_id = api.create_run()["id"]
    with Session() as s, s.begin():
        repo.write_epochs(session=s, run_id=run_id, rows=[{"epoch": 1, "train_loss": 1.0}])
        repo.write_weights_many(session=s, run_id=run_id, snapshots=[(1, b"npz")])

    response = api.delete(f"/api/runs/{run_id}")

    assert response.status_code == 204 and response.get_data() == b""
    assert_error(api.get(f"/api/runs/{run_id}"), 404, "not_found")
    assert_error(api.delete(f"/api/runs/{run_id}"), 404, "not_found")
    with Session() as s:
        assert repo.get_weights(session=s, run_id=run_id) is None


# --------------------------------------------------------------------------- cancel


def test_cancel_queued_run_cancels_it_at_once(api):
    run_id = api.create_run()["id"]

    response = api.post(f"/api/runs/{run_id}/cancel")

    assert response.status_code == 200
    run = response.get_json()
    assert run["status"] == "cancelled" and run["cancel_requested"] is True and run["finished_at"] is not None


def test_cancel_running_run_sets_the_flag(api, Session):
    run_id = api.create_run()["id"]
    with Session() as s, s.begin():
        repo.claim_run(session=s, run_id=run_id, worker="w1", lease_seconds=60)

    run = api.post(f"/api/runs/{run_id}/cancel").get_json()

    assert run["status"] == "running" and run["cancel_requested"] is True
    again = api.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 200 and again.get_json()["status"] == "running"


def test_cancel_finished_run_is_409(api, assert_error):
    run_id = api.create_run()["id"]
    api.post(f"/api/runs/{run_id}/cancel")

    assert_error(api.post(f"/api/runs/{run_id}/cancel"), 409, "already_finished")


def test_cancel_unknown_run_is_404(api, assert_error):
    assert_error(api.post(f"/api/runs/{'1' * 32}/cancel"), 404, "not_found")
