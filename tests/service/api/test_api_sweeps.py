"""``/api/sweeps``: a sweep's runs created and queued at once or not at all; progress, best run, listing, cancel."""

from __future__ import annotations

import copy

import pytest

from trainyard.service.storage import repo


@pytest.fixture
def grid(spec) -> dict:
    return {
        "name": "lr-units",
        "spec": spec,
        "method": "grid",
        "space": {"optimizer.lr": [0.5, 0.1], "model.hidden.0.units": [4, 8, 16]},
    }


def test_a_grid_sweep_creates_and_queues_every_run(api, grid, sent, run_count):
    response = api.post("/api/sweeps", json=grid)

    assert response.status_code == 201, response.get_json()
    sweep = response.get_json()
    assert response.headers["Location"].endswith(f"/api/sweeps/{sweep['id']}")
    assert sweep["method"] == "grid" and sweep["space"] == grid["space"] and sweep["spec"] == grid["spec"]
    assert sweep["progress"] == {
        "runs": 6, "counts": {"queued": 6, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0},
        "finished": 0, "epochs_done": 0, "epochs_total": 6 * grid["spec"]["epochs"],
    }  # fmt: skip
    runs = sweep["runs"]
    assert [(r["spec"]["optimizer"]["lr"], r["spec"]["model"]["hidden"][0]["units"]) for r in runs] == [
        (0.5, 4), (0.5, 8), (0.5, 16), (0.1, 4), (0.1, 8), (0.1, 16),
    ]  # fmt: skip
    assert all(run["sweep_id"] == sweep["id"] and run["status"] == "queued" for run in runs)
    assert run_count() == 6
    assert sorted(args[0] for _, args in sent()) == sorted(run["id"] for run in runs)
    listed = api.get(f"/api/runs?sweep={sweep['id']}").get_json()["runs"]
    assert {run["id"] for run in listed} == {run["id"] for run in runs}


def test_a_random_sweep_is_reproducible(api, spec):
    body = {
        "name": "random",
        "spec": spec,
        "method": "random",
        "n": 5,
        "seed": 3,
        "space": {"optimizer.lr": {"log_uniform": [1e-3, 1.0]}, "batch_size": {"choice": [1, 2, 4]}},
    }
    first = api.post("/api/sweeps", json=body).get_json()
    second = api.post("/api/sweeps", json=body).get_json()

    def values(sweep):
        return [(r["spec"]["optimizer"]["lr"], r["spec"]["batch_size"]) for r in sweep["runs"]]

    assert len(first["runs"]) == 5 and values(first) == values(second)
    assert first["n"] == 5 and first["seed"] == 3


def test_an_invalid_point_creates_nothing(api, grid, sent, run_count, assert_error):
    grid["space"]["optimizer.lr"] = [0.5, -0.1]

    error = assert_error(api.post("/api/sweeps", json=grid), 422, "invalid", "points.3.optimizer.lr")

    assert "point 3" in error["message"] and "optimizer.lr=-0.1" in error["message"]
    assert run_count() == 0 and sent() == []
    assert api.get("/api/sweeps").get_json()["sweeps"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"method": "grid", "space": {"seed": list(range(20)), "epochs": list(range(1, 20))}}, "space"),
        ({"space": {"model.hidden.3.units": [4]}}, "points.0"),
        ({"spec": {"name": "x"}}, "spec.dataset"),  # the base spec must be valid itself
        ({"extra": 1}, "extra"),
        ({"method": "random", "n": 2, "space": {"optimizer.lr": [1, 2]}}, "space.optimizer.lr"),
    ],
)
def test_bad_sweeps_are_refused_naming_the_field(api, grid, run_count, assert_error, change, field):
    assert_error(api.post("/api/sweeps", json=grid | change), 422, field=field)
    assert run_count() == 0


def test_a_missing_upload_refuses_the_sweep(api, grid, run_count, assert_error):
    grid["spec"]["dataset"] = {"upload": "0" * 32}
    assert_error(api.post("/api/sweeps", json=grid), 422, field="points.0.dataset.upload")
    assert run_count() == 0


def test_sweep_progress_and_best_run(api, reader, grid, Session):
    sweep = api.post("/api/sweeps", json=grid).get_json()
    first, second, third = (run["id"] for run in sweep["runs"][:3])
    with Session() as s, s.begin():
        for run_id, loss, status in ((first, 0.3, "succeeded"), (second, 0.1, "succeeded"), (third, 0.2, "failed")):
            repo.claim_run(session=s, run_id=run_id, worker="w", lease_seconds=30)
            repo.write_epochs(session=s, run_id=run_id, rows=[{"epoch": 1, "train_loss": loss}])
            summary = {"final_train_loss": loss, "final_train_accuracy": 1 - loss}
            repo.finish_run(session=s, run_id=run_id, status=status, summary=summary, worker="w")

    body = reader.get(f"/api/sweeps/{sweep['id']}").get_json()

    progress = body["progress"]
    assert progress["counts"] == {"queued": 3, "running": 0, "succeeded": 2, "failed": 1, "cancelled": 0}
    assert progress["finished"] == 3 and progress["epochs_done"] == 3
    assert body["best"] == {"metric": "train_loss", "value": 0.1, "run": second,  # no held-out data: train loss
                            "among": ["succeeded"]}
    best_accuracy = reader.get(f"/api/sweeps/{sweep['id']}?metric=train_accuracy").get_json()["best"]
    assert best_accuracy["run"] == second and best_accuracy["value"] == pytest.approx(0.9)
    assert reader.get(f"/api/sweeps/{sweep['id']}?metric=val_loss").get_json()["best"]["run"] is None


def test_cancelling_a_sweep_cancels_its_queued_and_running_runs(api, grid, Session):
    sweep = api.post("/api/sweeps", json=grid).get_json()
    running, done = sweep["runs"][0]["id"], sweep["runs"][1]["id"]
    with Session() as s, s.begin():
        repo.claim_run(session=s, run_id=running, worker="w", lease_seconds=30)
        repo.claim_run(session=s, run_id=done, worker="w", lease_seconds=30)
        repo.finish_run(session=s, run_id=done, status="succeeded", worker="w")

    body = api.post(f"/api/sweeps/{sweep['id']}/cancel").get_json()

    statuses = {run["id"]: (run["status"], run["cancel_requested"]) for run in body["runs"]}
    assert statuses[running] == ("running", True)  # its worker stops it at the next flush
    assert statuses[done] == ("succeeded", False)
    assert all(status == "cancelled" for run_id, (status, _) in statuses.items() if run_id not in (running, done))
    assert body["progress"]["counts"]["cancelled"] == 4


def test_list_sweeps_newest_first(api, reader, grid):
    older = api.post("/api/sweeps", json=grid).get_json()["id"]
    newer = api.post("/api/sweeps", json=copy.deepcopy(grid) | {"name": "second"}).get_json()["id"]

    sweeps = reader.get("/api/sweeps").get_json()["sweeps"]

    assert [sweep["id"] for sweep in sweeps] == [newer, older]
    assert "runs" not in sweeps[0] and sweeps[0]["progress"]["runs"] == 6
    assert len(reader.get("/api/sweeps?limit=1").get_json()["sweeps"]) == 1


def test_sweep_errors(api, reader, grid, assert_error):
    assert_error(reader.post("/api/sweeps", json=grid), 403)
    assert_error(reader.get(f"/api/sweeps/{'0' * 32}"), 404, "not_found")
    assert_error(api.post(f"/api/sweeps/{'0' * 32}/cancel"), 404)
    sweep_id = api.post("/api/sweeps", json=grid).get_json()["id"]
    assert_error(reader.get(f"/api/sweeps/{sweep_id}?metric=loss"), 400, field="metric")


def test_the_base_spec_is_valid_itself_even_where_the_space_covers_it(api, grid, run_count, assert_error):
    grid["spec"]["notes"] = "n" * 900_000  # over the spec's 10,000 characters, though every run's notes are swept
    grid["space"] = {"notes": ["a", "b"]}
    assert_error(api.post("/api/sweeps", json=grid), 422, field="spec.notes")
    assert run_count() == 0


def test_every_value_a_choice_lists_is_checked_drawn_or_not(api, grid, run_count, assert_error):
    sweep = grid | {"method": "random", "n": 1, "space": {"optimizer.lr": {"choice": [0.1, -5.0]}}}
    assert_error(api.post("/api/sweeps", json=sweep), 422, field="space.optimizer.lr.choice.1.optimizer.lr")
    assert run_count() == 0


def test_a_swept_value_is_bounded_in_size(api, grid, run_count, assert_error):
    error = assert_error(api.post("/api/sweeps", json=grid | {"space": {"tags": [["t" * 60] * 200]}}), 422)
    assert "space.tags.0" in error["message"] and "bytes" in error["message"]
    assert run_count() == 0


def test_the_sweeps_list_pages_and_counts_without_reading_runs(api, reader, grid, Session, assert_error):
    made = [api.post("/api/sweeps", json=grid | {"name": f"s{i}"}).get_json() for i in range(3)]
    with Session() as s, s.begin():  # a finished run with metrics, to rank
        repo.finish_run(session=s, run_id=made[0]["runs"][1]["id"], status="succeeded",
                        summary={"final_train_loss": 0.25, "best_val_loss": 0.5})
    first = reader.get("/api/sweeps?limit=2").get_json()
    second = reader.get(f"/api/sweeps?limit=2&cursor={first['next']}").get_json()
    assert [s["name"] for s in first["sweeps"] + second["sweeps"]] == ["s2", "s1", "s0"] and second["next"] is None
    listed = second["sweeps"][0]
    shown = reader.get(f"/api/sweeps/{made[0]['id']}").get_json()
    assert (listed["progress"], listed["best"]) == (shown["progress"], shown["best"])
    assert listed["progress"]["counts"]["succeeded"] == 1 and listed["best"]["run"] == made[0]["runs"][1]["id"]
    assert "runs" not in listed
    assert_error(reader.get("/api/sweeps?cursor=nope"), 400, "invalid_parameter", "cursor")


def _finish(Session, run_id: str, status: str, summary: dict) -> None:
    with Session() as s, s.begin():
        repo.claim_run(session=s, run_id=run_id, worker="w", lease_seconds=30)
        repo.finish_run(session=s, run_id=run_id, status=status, summary=summary, worker="w")


def test_a_sweeps_best_is_a_run_that_finished_training(api, reader, grid, Session):
    """A cancelled run with the lowest loss (it stopped early: its metrics are not comparable) is never the best."""
    sweep = api.post("/api/sweeps", json=grid).get_json()
    cancelled, succeeded = sweep["runs"][0]["id"], sweep["runs"][1]["id"]
    _finish(Session, cancelled, "cancelled", {"final_train_loss": 0.01})
    _finish(Session, succeeded, "succeeded", {"final_train_loss": 0.2})

    shown = reader.get(f"/api/sweeps/{sweep['id']}").get_json()
    listed = reader.get("/api/sweeps").get_json()["sweeps"][0]

    assert shown["best"] == listed["best"] == {"metric": "train_loss", "value": 0.2, "run": succeeded,
                                               "among": ["succeeded"]}
    assert [run["id"] for run in shown["runs"]] == [run["id"] for run in sweep["runs"]]


def test_a_sweeps_order_and_ties_follow_its_points_not_names(api, reader, grid, Session):
    """Renaming a run or a sweep name long enough to cut off the run numbers changes neither the order nor the best
    of tied runs: the first point wins a tie."""
    long = grid | {"name": "s" * 200}
    sweep = api.post("/api/sweeps", json=long).get_json()
    ids = [run["id"] for run in sweep["runs"]]
    assert len({run["name"] for run in sweep["runs"]}) == 1  # every name cut to the sweep's 200 characters
    for run_id in ids[:2]:
        _finish(Session, run_id, "succeeded", {"final_train_loss": 0.5})
    api.patch(f"/api/runs/{ids[0]}", json={"name": "zzz renamed"})
    api.patch(f"/api/runs/{ids[1]}", json={"name": "aaa renamed"})

    shown, listed = reader.get(f"/api/sweeps/{sweep['id']}").get_json(), reader.get("/api/sweeps").get_json()
    assert shown["best"]["run"] == listed["sweeps"][0]["best"]["run"] == ids[0]
    assert [run["id"] for run in reader.get(f"/api/sweeps/{sweep['id']}").get_json()["runs"]] == ids
