"""Every number the API accepts has a bound, is read back as it was sent, and no stored value can break a listing.

PostgreSQL's JSONB gives a float of 1e16 or more back as an integer (``1e22``
is stored as ``10000000000000000000000``), which JSON encoders may refuse: one
such spec once made every listing that held it answer 500.  So every number a
spec or a sweep takes is bounded below that, and what the database holds from
before is still written.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from factories import xor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schema_values import values

from trainyard.service.storage import repo
from trainyard.trainer import TrainSpec
from trainyard.trainer.spec import MAX_MIN_DELTA

PROPERTY = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

#: A spec's parts drawn from the schema's own bounds, each set into a small spec that trains on xor.
PARTS = ("optimizer", "lr_schedule", "early_stopping", "epochs", "batch_size", "seed", "snapshot_every", "dtype")
SCHEMA = TrainSpec.model_json_schema()


def _same(sent: Any, read: Any) -> bool:
    """Equal, and of the same JSON type all the way down (a float stays a float)."""
    if isinstance(sent, dict):
        return isinstance(read, dict) and sent.keys() == read.keys() and all(_same(sent[k], read[k]) for k in sent)
    if isinstance(sent, list):
        return isinstance(read, list) and len(sent) == len(read) and all(map(_same, sent, read))
    return type(sent) is type(read) and sent == read


def _read_back(reader, run_id: str) -> list[dict[str, Any]]:
    """The run as every endpoint that shows a run's spec gives it; each must answer 200."""
    answers = [
        reader.get(f"/api/runs/{run_id}"),
        reader.get("/api/runs"),
        reader.get(f"/api/compare?runs={run_id}"),
        reader.get(f"/api/runs/{run_id}/export?format=json"),
    ]
    assert [answer.status_code for answer in answers] == [200] * 4, [a.get_data(as_text=True) for a in answers]
    one, listed, compared, exported = (answer.get_json() for answer in answers)
    return [one, *[run for run in listed["runs"] if run["id"] == run_id], compared["runs"][0], exported["run"]]


@PROPERTY
@given(part=st.sampled_from(PARTS).flatmap(lambda name: st.tuples(st.just(name), values(SCHEMA["properties"][name],
                                                                                      SCHEMA))))
def test_a_spec_drawn_from_the_schemas_bounds_reads_back_as_it_was_sent(api, reader, part):
    name, value = part
    spec = xor(**{name: value}, dataset={"name": "xor", "test_fraction": 0.5})
    response = api.post("/api/runs", json=spec)
    assert response.status_code in (201, 422), response.get_json()
    if response.status_code == 422:
        return
    stored = TrainSpec.model_validate(spec).model_dump(mode="json")
    for shown in _read_back(reader, response.get_json()["id"]):
        assert _same(stored, shown["spec"]), (stored, shown["spec"])


@PROPERTY
@given(low=st.floats(0.0, MAX_MIN_DELTA), high=st.floats(0.0, MAX_MIN_DELTA))
def test_a_sweep_over_the_widest_bounds_reads_back_as_it_was_sent(api, reader, low, high):
    low, high = sorted((low, high))
    request = {"name": "wide", "spec": xor(early_stopping={"monitor": "train_loss"}), "method": "random", "n": 2,
               "space": {"early_stopping.min_delta": {"uniform": [low, high]}}}
    created = api.post("/api/sweeps", json=request)
    assert created.status_code == 201, created.get_json()
    sweep_id = created.get_json()["id"]
    for answer in (reader.get(f"/api/sweeps/{sweep_id}").get_json(), *reader.get("/api/sweeps").get_json()["sweeps"]):
        if answer["id"] == sweep_id:
            assert _same(request["space"], answer["space"])
    for run in reader.get(f"/api/runs?sweep={sweep_id}").get_json()["runs"]:
        assert low <= run["spec"]["early_stopping"]["min_delta"] <= high  # draws stay within their bounds


def test_numbers_past_their_bounds_are_refused_naming_the_field(api, assert_error, run_count):
    assert_error(api.post("/api/runs", json=xor(early_stopping={"monitor": "train_loss", "min_delta": 1e22})), 422,
                 field="early_stopping.min_delta")
    sweep = {"name": "s", "spec": xor(), "method": "random", "n": 1}
    for space, field in (({"optimizer.lr": {"uniform": [1e22, 1e22]}}, "space.optimizer.lr.uniform"),
                         ({"optimizer.lr": {"uniform": [-1.7e308, 1.7e308]}}, "space.optimizer.lr.uniform"),
                         ({"seed": {"int_uniform": [0, 2**70]}}, "space.seed.int_uniform")):
        error = assert_error(api.post("/api/sweeps", json=sweep | {"space": space}), 422)
        assert field in error["message"], error
    assert run_count() == 0


def test_a_log_uniform_of_one_value_draws_that_value(api):
    space = {"optimizer.lr": {"log_uniform": [10, 10]}}
    request = {"name": "one", "spec": xor(), "method": "random", "n": 3, "space": space}
    created = api.post("/api/sweeps", json=request)
    assert created.status_code == 201, created.get_json()  # exp(log(10)) is 10.000000000000002: clamped to 10
    assert {run["spec"]["optimizer"]["lr"] for run in created.get_json()["runs"]} == {10.0}


def test_a_value_stored_before_the_bounds_is_still_listed(api, reader, Session):
    """A run and a sweep stored with numbers the API now refuses (as older versions accepted them)."""
    old = copy.deepcopy(xor(early_stopping={"monitor": "train_loss", "min_delta": 1e22}))
    with Session() as s, s.begin():
        sweep = repo.create_sweep(session=s, name="old", method="random", base_spec=old,
                                  space={"space": {"x": {"uniform": [1e22, 1e22]}}, "n": 1, "seed": 0})
        run = repo.create_run(session=s, spec=old, name="old", seed=3, tags=[], notes="", epochs_total=200,
                              sweep_id=sweep.id)
    shown = _read_back(reader, run.id)
    assert all(math.isclose(answer["spec"]["early_stopping"]["min_delta"], 1e22) for answer in shown)
    assert reader.get(f"/api/sweeps/{sweep.id}").status_code == 200
    assert reader.get("/api/sweeps").status_code == 200


def test_a_name_of_spaces_is_refused_everywhere_a_name_is_taken(api, assert_error, run_count):
    assert_error(api.post("/api/runs", json=xor(name="   ")), 422, field="name")
    run_id = api.create_run()["id"]
    assert_error(api.patch(f"/api/runs/{run_id}", json={"name": " \t "}), 422, field="name")
    sweep = {"name": "  ", "spec": xor(), "method": "grid", "space": {"seed": [1, 2]}}
    assert_error(api.post("/api/sweeps", json=sweep), 422, field="name")
    assert run_count() == 1
