"""Property-based: no body or query string a client sends yields a 5xx, and a refused request writes nothing."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

SPEC_KEYS = ["name", "dataset", "model", "loss", "optimizer", "lr_schedule", "epochs", "batch_size", "shuffle",
             "dtype", "seed", "early_stopping", "snapshot_every", "tags", "notes", "version", "extra"]  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
params = st.text(st.characters(codec="utf-8"), max_size=12)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(SPEC_KEYS), json_values, max_size=3))
def test_posting_mutated_specs_never_fails_on_the_server(api, spec, run_count, changes):
    before = run_count()

    response = api.post("/api/runs", data=json.dumps(spec | changes), content_type="application/json")

    assert response.status_code in (201, 422), response.get_json()
    assert run_count() == before + (response.status_code == 201)


@FUZZ
@given(body=st.binary(max_size=64) | json_values.map(lambda value: json.dumps(value).encode()))
def test_posting_arbitrary_bodies_never_fails_on_the_server(api, run_count, body):
    response = api.post("/api/runs", data=body, content_type="application/json")

    assert response.status_code in (201, 400, 422), response.get_json()
    assert run_count() == 0 or response.status_code == 201


@FUZZ
@given(body=json_values)
def test_patching_arbitrary_bodies_never_fails_on_the_server(api, body):
    run = api.get(f"/api/runs/{api.create_run()['id']}").get_json()

    response = api.patch(f"/api/runs/{run['id']}", data=json.dumps(body), content_type="application/json")

    assert response.status_code in (200, 422), response.get_json()
    if response.status_code == 422:
        assert api.get(f"/api/runs/{run['id']}").get_json() == run


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["status", "tag", "sweep", "q", "sort", "limit", "cursor"]), params))
def test_listing_with_arbitrary_parameters_never_fails_on_the_server(reader, query):
    response = reader.get("/api/runs", query_string=query)

    assert response.status_code in (200, 400), response.get_json()


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["since", "fields", "max_points", "epoch", "format"]), params))
def test_epochs_and_weights_with_arbitrary_parameters_never_fail_on_the_server(api, query):
    run_id = api.create_run()["id"]

    for path in (f"/api/runs/{run_id}/epochs", f"/api/runs/{run_id}/weights"):
        assert api.get(path, query_string=query).status_code in (200, 400, 404)
