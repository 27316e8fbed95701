"""Bad input: every refusal is a JSON error with a 4xx naming the field, and writes nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text

from trainyard.service.app import MAX_CONTENT_LENGTH, create_app
from trainyard.service.config import Settings
from trainyard.service.storage.migrate import SchemaBehind, downgrade

BASE = {"dataset": {"name": "xor"}}


def _with(**changes):
    return BASE | changes


#: Malformed specs and the field each must be refused for (every one a 4xx naming it).
MALFORMED = [
    ({}, "dataset"),
    ({"dataset": None}, "dataset"),
    ({"dataset": "xor"}, "dataset"),
    ({"dataset": {"name": "mnist"}}, "dataset.name"),
    ({"dataset": {"name": "moons", "n_samples": 2}}, "dataset.n_samples"),
    ({"dataset": {"name": "moons", "n_samples": "100"}}, "dataset.n_samples"),
    ({"dataset": {"name": "moons", "noise": -1.0}}, "dataset.noise"),
    ({"dataset": {"name": "xor", "test_fraction": 0.95}}, "dataset.test_fraction"),
    ({"dataset": {"upload": "../etc/passwd"}}, "dataset.upload"),
    ({"dataset": {"upload": ""}}, "dataset.upload"),
    ({"dataset": {"upload": "missing-id"}}, "dataset.upload"),
    (_with(model={"type": "cnn"}), "model"),
    (_with(model={"type": "mlp", "hidden": [{"units": 0}]}), "model.hidden.0.units"),
    (_with(model={"type": "mlp", "hidden": [{"units": 5000}]}), "model.hidden.0.units"),
    (_with(model={"type": "mlp", "hidden": [{"units": 4, "activation": "swish"}]}), "model.hidden.0.activation"),
    (_with(model={"type": "mlp", "hidden": [{"units": 4}] * 17}), "model.hidden"),
    (_with(model={"type": "mlp", "hidden": [{"units": True}]}), "model.hidden.0.units"),
    (_with(model={"type": "mlp", "init": "zeros"}), "model.init"),
    (_with(loss="hinge"), "loss"),
    (_with(optimizer={"name": "lbfgs"}), "optimizer"),
    (_with(optimizer={"name": "sgd", "lr": 0}), "optimizer.lr"),
    (_with(optimizer={"name": "sgd", "lr": -0.1}), "optimizer.lr"),
    (_with(optimizer={"name": "sgd", "lr": "0.1"}), "optimizer.lr"),
    (_with(optimizer={"name": "sgd", "lr": False}), "optimizer.lr"),
    (_with(optimizer={"name": "adam", "lr": 0.01, "momentum": 0.9}), "optimizer.momentum"),
    (_with(epochs=0), "epochs"),
    (_with(epochs=10**7), "epochs"),
    (_with(epochs=2.5), "epochs"),
    (_with(epochs="10"), "epochs"),
    (_with(epochs=None), "epochs"),
    (_with(batch_size=0), "batch_size"),
    (_with(seed=-1), "seed"),
    (_with(seed=2**40), "seed"),
    (_with(dtype="float16"), "dtype"),
    (_with(shuffle="yes"), "shuffle"),
    (_with(name=""), "name"),
    (_with(name="x" * 201), "name"),
    (_with(name="bad\u0000name"), "name"),
    (_with(tags="one"), "tags"),
    (_with(tags=[""]), "tags.0"),
    (_with(tags=["ok", 7]), "tags.1"),
    (_with(tags=["t"] * 33), "tags"),
    (_with(tags=["nul\u0000"]), "tags.0"),
    (_with(notes="n" * 10_001), "notes"),
    (_with(notes=None), "notes"),
    (_with(version=2), "version"),
    (_with(colour="red"), "colour"),
    (_with(early_stopping={"patience": 0}), "early_stopping.patience"),
    (_with(early_stopping={"monitor": "val_loss"}), "early_stopping.monitor"),
    (_with(lr_schedule={"name": "warp"}), "lr_schedule"),
    (_with(snapshot_every=0), "snapshot_every"),
    # Refused only against the data (trainyard.trainer.check): 2 x 4096 x 4096 x 1 is over 10 million parameters on XOR.
    (_with(model={"type": "mlp", "hidden": [{"units": 4096}] * 2}), "model.hidden"),
    (_with(dataset={"name": "sine"}, loss="cross_entropy"), "loss"),
    ([BASE], "body"),
    ("spec", "body"),
    (None, "body"),
]


def test_largest_seed_is_stored(api):
    assert api.create_run(_with(seed=2**32 - 1))["spec"]["seed"] == 2**32 - 1


def test_deeply_nested_json_is_refused(api, run_count, assert_error):
    body = b"[" * 100_000 + b"]" * 100_000

    assert 400 <= api.post("/api/runs", data=body, content_type="application/json").status_code < 500
    assert run_count() == 0


def test_there_are_at_least_30_malformed_specs():
    assert len(MALFORMED) >= 30


def test_malformed_specs_are_4xx_naming_the_field_and_write_nothing(api, run_count, sent, assert_error):
    for spec, field in MALFORMED:
        response = api.post("/api/runs", data=json.dumps(spec), content_type="application/json")

        error = assert_error(response, 422, "invalid")
        assert field in [f["field"] for f in error["fields"]], (spec, error)
        assert run_count() == 0, spec
    assert sent() == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"{'dataset': {'name': 'xor'}}",
        b'{"dataset": {"name": "xor"},}',
        b'{"dataset": {"name": "xor"}} trailing',
        b"\xff\xfe",
        b'{"dataset": {"name": "xor"}, "name": "\\ud800"}',
    ],
)
def test_broken_json_is_400(api, run_count, assert_error, body):
    error = assert_error(api.post("/api/runs", data=body, content_type="application/json"), 400)

    assert error["code"] in {"bad_json", "invalid_parameter"}
    assert run_count() == 0


@pytest.mark.parametrize(
    "body, field",
    [
        (b'{"dataset": {"name": "xor"}, "optimizer": {"name": "sgd", "lr": NaN}}', "optimizer.lr"),
        (b'{"dataset": {"name": "xor"}, "optimizer": {"name": "sgd", "lr": Infinity}}', "optimizer.lr"),
        (b'{"dataset": {"name": "xor"}, "epochs": 1e999999}', "epochs"),
        (b"NaN", "body"),
    ],
)
def test_non_finite_numbers_are_refused(api, run_count, assert_error, body, field):
    assert_error(api.post("/api/runs", data=body, content_type="application/json"), 422, "invalid", field)
    assert run_count() == 0


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/xml"]
)
def test_non_json_content_type_is_415(api, run_count, assert_error, content_type):
    body = json.dumps(BASE)
    headers = {} if content_type is None else {"Content-Type": content_type}

    assert_error(api.post("/api/runs", data=body, headers=headers), 415, "unsupported_media_type")
    assert run_count() == 0


def test_json_with_charset_is_accepted(api):
    response = api.post("/api/runs", data=json.dumps(BASE), content_type="application/json; charset=utf-8")

    assert response.status_code == 201


def test_body_over_the_limit_is_413(api, run_count, assert_error):
    body = json.dumps(_with(notes="n" * MAX_CONTENT_LENGTH))

    error = assert_error(api.post("/api/runs", data=body, content_type="application/json"), 413, "too_large", "body")
    assert error["message"] == f"the body is {len(body):,} bytes (1 MiB); the limit is 1,048,576 bytes (1 MiB)"
    assert_error(api.patch(f"/api/runs/{'0' * 32}", data=body, content_type="application/json"), 413, "too_large")
    assert run_count() == 0


def test_body_at_the_limit_is_read(api, assert_error):
    body = json.dumps(BASE).encode()
    body = body[:-1] + b" " * (MAX_CONTENT_LENGTH - len(body)) + b"}"

    assert api.post("/api/runs", data=body, content_type="application/json").status_code == 201


@pytest.mark.parametrize("path", ["/nope", "/api", "/api/", "/api/nope", "/api/runs/x/y", "/api/sweeps/x"])
def test_unknown_route_is_json_404(api, assert_error, path):
    assert_error(api.get(path), 404, "not_found")


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("PUT", "/api/runs", {"GET", "POST"}),
        ("DELETE", "/api/runs", {"GET", "POST"}),
        ("POST", f"/api/runs/{'0' * 32}", {"GET", "PATCH", "DELETE"}),
        ("GET", f"/api/runs/{'0' * 32}/cancel", {"POST"}),
        ("POST", "/healthz", {"GET"}),
    ],
)
def test_wrong_method_is_json_405(api, assert_error, method, path, allowed):
    response = api.open(path, method)

    assert_error(response, 405, "method_not_allowed")
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_create_app_refuses_an_unmigrated_database(database_url, redis_url, tmp_path, queue):
    settings = Settings(data_dir=tmp_path, database_url=database_url, broker_url=redis_url)

    with pytest.raises(SchemaBehind, match="trainyard db upgrade"):
        create_app(settings, queue=queue)


def test_create_app_refuses_a_database_that_is_behind(url, redis_url, tmp_path, queue):
    engine = create_engine(url)
    with engine.connect() as connection:
        head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    downgrade(url, "-1")
    settings = Settings(data_dir=tmp_path, database_url=url, broker_url=redis_url)

    with pytest.raises(SchemaBehind, match="trainyard db upgrade") as raised:
        create_app(settings, queue=queue)
    assert head in str(raised.value)


def test_unexpected_error_is_a_json_500_and_logged(app, api, assert_error, caplog, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("trainyard.service.storage.repo.get_run", broken)

    error = assert_error(api.get(f"/api/runs/{'0' * 32}"), 500, "internal_error")
    assert "a bug" not in error["message"]
    assert "a bug" in caplog.text
