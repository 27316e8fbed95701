"""``GET /api/compare``: runs in order, their parameters split into differ/same, downsampled curves; its errors."""

from __future__ import annotations

import copy

import pytest

from trainyard.service.api import compare
from trainyard.service.api.schemas import DEFAULT_COMPARE_FIELDS
from trainyard.service.comparison import MAX_RUNS, compare_params
from trainyard.service.specpaths import flatten
from trainyard.service.storage import repo
from trainyard.trainer import TrainSpec


@pytest.fixture
def two_runs(api, spec, Session) -> tuple[str, str]:
    """Two runs differing only in ``optimizer.lr`` and ``model.hidden.0.units`` (and name and notes); with epochs."""
    other = copy.deepcopy(spec)
    other["name"], other["notes"], other["tags"] = "other", "second try", ["x"]
    other["optimizer"]["lr"] = 0.1
    other["model"]["hidden"][0]["units"] = 16
    first, second = api.create_run(spec)["id"], api.create_run(other)["id"]
    rows = [{"epoch": n, "train_loss": 1.0 / n, "val_loss": 2.0 / n, "lr": 0.5} for n in range(1, 101)]
    spiky = [dict(row, train_loss=row["train_loss"] / 2) for row in rows]
    spiky[59]["train_loss"] = 40.0  # a spike downsampling must keep
    with Session() as s, s.begin():
        repo.write_epochs(session=s, run_id=first, rows=rows[:50])
        repo.write_epochs(session=s, run_id=first, rows=rows[50:])
        repo.write_epochs(session=s, run_id=second, rows=spiky)
    return first, second


def test_compare_two_runs(reader, two_runs):
    first, second = two_runs
    response = reader.get(f"/api/compare?runs={first},{second}")

    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["runs", "params", "curves"]
    assert [run["id"] for run in body["runs"]] == [first, second]
    assert body["runs"][1]["name"] == "other" and body["runs"][1]["spec"]["optimizer"]["lr"] == 0.1
    params = body["params"]
    assert params["differ"] == {"model.hidden.0.units": [8, 16], "optimizer.lr": [0.5, 0.1]}
    same = params["same"]
    assert same["dataset.name"] == "xor" and same["model.hidden.0.activation"] == "tanh"
    assert same["optimizer.momentum"] == 0.9 and same["seed"] == 3 and same["epochs"] == 200
    assert not {"name", "tags", "tags.0", "notes"} & (set(same) | set(params["differ"]))
    curves = body["curves"]
    assert list(curves) == [first, second]
    assert list(curves[first]) == ["epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy"]
    assert curves[first]["epoch"] == list(range(1, 101))
    assert curves[first]["train_loss"][:2] == [1.0, 0.5] and curves[first]["val_loss"][1] == 1.0
    assert curves[first]["train_accuracy"] == [None] * 100
    assert curves[second]["train_loss"][59] == 40.0


def test_compare_keeps_the_order_asked(reader, two_runs):
    first, second = two_runs
    body = reader.get(f"/api/compare?runs={second},{first}").get_json()

    assert [run["id"] for run in body["runs"]] == [second, first]
    assert list(body["curves"]) == [second, first]
    assert body["params"]["differ"]["optimizer.lr"] == [0.1, 0.5]


def test_compare_one_run_has_everything_the_same(reader, two_runs):
    body = reader.get(f"/api/compare?runs={two_runs[0]}&fields=val_loss").get_json()

    assert body["params"]["differ"] == {}
    assert body["params"]["same"]["optimizer.lr"] == 0.5
    curve = body["curves"][two_runs[0]]
    assert list(curve) == ["epoch", "val_loss"]
    assert curve["epoch"][0] == 1 and curve["val_loss"][0] == 2.0


def test_compare_downsamples_and_keeps_the_spike(reader, two_runs):
    first, second = two_runs
    body = reader.get(f"/api/compare?runs={first},{second}&fields=train_loss,lr&max_points=10").get_json()

    for run_id in two_runs:
        curve = body["curves"][run_id]
        assert list(curve) == ["epoch", "train_loss", "lr"]
        assert 2 <= len(curve["epoch"]) <= 10 and len(curve["train_loss"]) == len(curve["lr"]) == len(curve["epoch"])
        assert curve["epoch"][0] == 1 and curve["epoch"][-1] == 100
    spiky = body["curves"][second]
    assert spiky["train_loss"][spiky["epoch"].index(60)] == 40.0
    # the same points as the epochs endpoint keeps
    epochs = reader.get(f"/api/runs/{second}/epochs?fields=train_loss,lr&max_points=10").get_json()["epochs"]
    assert spiky["epoch"] == [row["epoch"] for row in epochs]
    assert spiky["train_loss"] == [row["train_loss"] for row in epochs]


def test_compare_runs_without_epochs(reader, api):
    run_id = api.create_run()["id"]

    curves = reader.get(f"/api/compare?runs={run_id}").get_json()["curves"]
    assert curves == {run_id: {field: [] for field in ("epoch", *DEFAULT_COMPARE_FIELDS)}}


def test_compare_a_run_with_fewer_layers(reader, api, spec):
    wide = copy.deepcopy(spec)
    wide["model"]["hidden"].append({"units": 4, "activation": "relu"})
    first, second = api.create_run(spec)["id"], api.create_run(wide)["id"]

    differ = reader.get(f"/api/compare?runs={first},{second}").get_json()["params"]["differ"]

    assert differ["model.hidden.1.units"] == [None, 4]
    assert differ["model.hidden.1.activation"] == [None, "relu"]
    assert "model.hidden.0.units" not in differ


def test_flatten_and_compare_params():
    spec = {"name": "a", "a": {"b": [1, {"c": True}], "e": [], "f": {}}, "g": None}

    assert list(flatten(spec)) == [
        ("name", "a"),
        ("a.b.0", 1),
        ("a.b.1.c", True),
        ("a.e", []),
        ("a.f", {}),
        ("g", None),
    ]
    assert compare_params([{"x": 1, "y": True, "tags": ["a"]}, {"x": 1, "y": 1, "z": 2, "tags": ["b"]}]) == {
        "differ": {"y": [True, 1], "z": [None, 2]},
        "same": {"x": 1},
        "absent": {"z": [0]},
    }


def test_null_beside_absent_is_no_difference():
    """``"lr_schedule": null`` beside a schedule whose ``t_max`` is null: only the schedule's real values differ."""
    specs = [{"lr_schedule": None, "epochs": 5}, {"lr_schedule": {"type": "cosine", "t_max": None}, "epochs": 5},
             {"lr_schedule": {"type": "cosine", "t_max": None}, "epochs": 5, "extra": None}]

    params = compare_params(specs)

    assert params["differ"] == {"lr_schedule.type": [None, "cosine", "cosine"]}
    assert params["absent"] == {"lr_schedule.type": [0]}
    assert params["same"] == {"epochs": 5}  # lr_schedule, lr_schedule.t_max and extra: null or absent everywhere


def test_compare_orders_parameters_as_the_spec_schema(reader, api, spec):
    """Paths come in the order of the spec's fields whatever order the database keeps keys in (JSONB sorts them by
    length), and a path one run lacks sits beside its siblings, not at the end."""
    scheduled = copy.deepcopy(spec) | {"lr_schedule": {"type": "step", "step_size": 10}}
    ids = [api.create_run(spec)["id"], api.create_run(scheduled)["id"]]

    params = reader.get(f"/api/compare?runs={','.join(ids)}").get_json()["params"]

    order = list(flatten(TrainSpec.model_validate(scheduled).model_dump(mode="json")))
    paths = [path for path, _ in order]
    shown = [path for path in paths if path in params["same"] or path in params["differ"]]
    assert list(params["same"]) == [path for path in shown if path in params["same"]]
    assert list(params["differ"]) == ["lr_schedule.type", "lr_schedule.step_size", "lr_schedule.gamma"]
    assert params["absent"] == {path: [0] for path in params["differ"]}


def test_compare_accepts_up_to_100_runs(reader, api, Session):
    ids = [api.create_run()["id"] for _ in range(MAX_RUNS)]

    body = reader.get(f"/api/compare?runs={','.join(ids)}&fields=train_loss").get_json()

    assert [run["id"] for run in body["runs"]] == ids
    assert body["params"]["differ"] == {}


@pytest.mark.parametrize(
    "query",
    [
        "",
        "runs=",
        "runs=RUN,",
        "runs=,RUN",
        "runs=RUN,,RUN",
        "runs=RUN,RUN",
        "runs=RUN%00",
        f"runs={','.join(['0' * 32] * 50 + ['1' * 32] * 51)}",
    ],
)
def test_compare_refuses_a_bad_runs_parameter(reader, two_runs, assert_error, query):
    response = reader.get(f"/api/compare?{query.replace('RUN', two_runs[0])}")

    assert_error(response, 400, "invalid_parameter", "runs")


def test_compare_refuses_more_than_100_runs(reader, assert_error):
    ids = [f"{n:032x}" for n in range(MAX_RUNS + 1)]

    error = assert_error(reader.get(f"/api/compare?runs={','.join(ids)}"), 400, "invalid_parameter", "runs")

    assert "101" in error["message"]


@pytest.mark.parametrize("unknown", ["0" * 32, "not-an-id", "F" * 32])
def test_compare_unknown_run_is_404_naming_it(reader, two_runs, assert_error, unknown):
    response = reader.get(f"/api/compare?runs={two_runs[0]},{unknown},{two_runs[1]}")

    error = assert_error(response, 404, "not_found", "runs")
    assert unknown in error["message"] and two_runs[0] not in error["message"]


@pytest.mark.parametrize(
    "query, field",
    [
        ("max_points=1", "max_points"),
        ("max_points=0", "max_points"),
        ("max_points=x", "max_points"),
        ("max_points=-5", "max_points"),
        ("max_points=", "max_points"),
        ("max_points=999999999999", "max_points"),
        ("fields=", "fields"),
        ("fields=train_loss,colour", "fields"),
        ("fields=weight_norms", "fields"),
        ("fields=train_loss,", "fields"),
    ],
)
def test_compare_refuses_bad_parameters(reader, two_runs, assert_error, query, field):
    response = reader.get(f"/api/compare?runs={two_runs[0]}&{query}")

    assert_error(response, 400, "invalid_parameter", field)


def test_compare_needs_a_token(client, two_runs, assert_error):
    response = client.get(f"/api/compare?runs={two_runs[0]}")

    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_compare_refuses_a_revoked_token(client, tokens, two_runs, assert_error):
    response = client.get(f"/api/compare?runs={two_runs[0]}", headers={"Authorization": f"Bearer {tokens['revoked']}"})

    assert_error(response, 401, "unauthorized")


def test_compare_is_a_read_endpoint():
    assert compare.compare.required_scope == "read"
