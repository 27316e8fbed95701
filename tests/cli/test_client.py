"""The Python client against the real API over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import email.utils
import http.server
import io
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from trainyard.client import RETRY_PAUSE, ApiError, Client, ClientError, Unreachable, retry_after


def test_health_and_ready(client):
    assert client.health() == {"status": "ok"}
    assert client.ready() == {"database": "ok", "broker": "ok"}


def test_submit_read_update_delete(client, spec):
    run = client.submit(spec)
    assert run["status"] == "queued" and run["name"] == "xor-tanh" and run["epochs_total"] == 30
    assert client.run(run["id"]) == {key: value for key, value in run.items() if key != "defaults"}
    changed = client.update(run["id"], name="renamed", tags=["a", "b"], notes="why")
    assert (changed["name"], changed["tags"], changed["notes"]) == ("renamed", ["a", "b"], "why")
    client.delete(run["id"])
    with pytest.raises(ApiError) as missing:
        client.run(run["id"])
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert run["id"] in missing.value.message


def test_runs_iterates_every_page_with_filters(client, spec):
    ids = [client.submit(spec | {"name": f"run-{i}"})["id"] for i in range(5)]
    client.submit(spec | {"name": "other", "tags": ["elsewhere"]})
    assert [run["id"] for run in client.runs(tag="cli-test", page_size=2)] == ids[::-1]
    assert [run["name"] for run in client.runs(q="run-", sort="name", page_size=3)] == [f"run-{i}" for i in range(5)]
    assert [run["name"] for run in client.runs(status="queued", tag="elsewhere")] == ["other"]
    assert list(client.runs(status="succeeded")) == []


def test_epochs_follows_every_page(client, spec, server, monkeypatch):
    """The API answers at most a page of epochs; the client reads them all, a page at a time."""
    from trainyard import client as client_module
    from trainyard.service.storage import repo

    monkeypatch.setattr(client_module, "EPOCH_PAGE", 300)
    run_id = client.submit(spec)["id"]
    with server.Session() as s, s.begin():
        repo.write_epochs(session=s, run_id=run_id, rows=[{"epoch": n, "train_loss": 1.0 / n} for n in range(1, 1001)])

    epochs = client.epochs(run_id, fields=["train_loss"])

    assert [row["epoch"] for row in epochs] == list(range(1, 1001)) and epochs[9]["train_loss"] == 0.1
    assert [row["epoch"] for row in client.epochs(run_id, since=990)] == list(range(991, 1001))
    assert len(client.epochs(run_id, max_points=50)) == 50


def test_export_to_a_file_streams_what_export_returns(client, spec, train, tmp_path):
    run_id = client.submit(spec)["id"]
    train(run_id)
    for form in ("csv", "json"):
        path = tmp_path / f"epochs.{form}"
        with path.open("wb") as file:
            written = client.export_to(run_id, file, form)
        assert path.read_bytes() == client.export(run_id, form) and written == path.stat().st_size > 1000
    with pytest.raises(ApiError) as missing, (tmp_path / "none.csv").open("wb") as file:
        client.export_to("0" * 32, file)
    assert missing.value.status == 404 and (tmp_path / "none.csv").stat().st_size == 0


def test_epochs_weights_and_follow_of_a_trained_run(client, spec, train):
    run = client.submit(spec)
    train(run["id"])
    epochs = client.epochs(run["id"])
    assert [e["epoch"] for e in epochs] == list(range(1, 31))
    assert set(epochs[0]) >= {"train_loss", "lr", "weight_norms", "grad_norms"}
    assert [e["epoch"] for e in client.epochs(run["id"], since=25, fields=["train_loss"])] == [26, 27, 28, 29, 30]
    assert set(client.epochs(run["id"], fields=["train_loss"])[0]) == {"epoch", "train_loss"}
    assert len(client.epochs(run["id"], max_points=6)) <= 6

    last = client.weights(run["id"])
    assert last["epoch"] == 30 and len(last["layers"]) == 2
    assert np.asarray(last["layers"][0]["W"]).shape == (2, 8)
    npz = client.weights(run["id"], epoch=3, format="npz")
    with np.load(io.BytesIO(npz), allow_pickle=False) as arrays:
        assert sorted(arrays.files) == ["W1", "W2", "b1", "b2"]
    assert not np.array_equal(np.load(io.BytesIO(npz))["W1"], np.asarray(last["layers"][0]["W"]))

    steps = list(client.follow(run["id"], interval=0.01))
    assert len(steps) == 1  # already finished: one look, every epoch
    finished, followed = steps[0]
    assert finished["status"] == "succeeded" and len(followed) == 30
    assert set(followed[0]) == {"epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy"}


def test_cancel_and_cancelling_a_finished_run(client, spec, train):
    queued = client.submit(spec)
    cancelled = client.cancel(queued["id"])
    assert cancelled["cancel_requested"] is True
    done = client.submit(spec)
    train(done["id"])
    with pytest.raises(ApiError) as conflict:
        client.cancel(done["id"])
    assert (conflict.value.status, conflict.value.code) == (409, "already_finished")


def test_compare(client, spec, train):
    a = client.submit(spec)
    b = client.submit(spec | {"optimizer": {"name": "adam", "lr": 0.05}})
    train(a["id"])
    result = client.compare([a["id"], b["id"]], fields=["train_loss"], max_points=10)
    assert [run["id"] for run in result["runs"]] == [a["id"], b["id"]]
    assert result["params"]["differ"]["optimizer.name"] == ["sgd", "adam"]
    curves = result["curves"]
    assert 2 <= len(curves[a["id"]]["epoch"]) <= 10 and curves[b["id"]]["epoch"] == []
    with pytest.raises(ApiError) as missing:
        client.compare([a["id"], "f" * 32])
    assert missing.value.status == 404 and missing.value.fields[0]["field"] == "runs"


def test_compare_grouped_over_seeds(client, spec, train):
    a, b = client.submit(spec | {"seed": 1}), client.submit(spec | {"seed": 2})
    c = client.submit(spec | {"seed": 1, "optimizer": {"name": "adam", "lr": 0.05}})
    for run in (a, b):
        train(run["id"])
    groups = client.compare([a["id"], b["id"], c["id"]], fields=["train_loss"], group="seed")["groups"]
    assert [group["runs"] for group in groups] == [[a["id"], b["id"]], [c["id"]]]
    assert groups[0]["curves"]["train_loss"]["count"][0] == 2 and groups[1]["curves"]["epoch"] == []
    assert "groups" not in client.compare([a["id"]])
    with pytest.raises(ApiError) as bad:
        client.compare([a["id"]], group="lr")
    assert bad.value.status == 400 and bad.value.fields[0]["field"] == "group"


def test_datasets_upload_and_list(client, tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("x1,x2,label\n0,0,a\n0,1,b\n1,0,b\n1,1,a\n")
    uploaded = client.upload_dataset(path, name="my points", target="label")
    assert uploaded["name"] == "my points" and uploaded["filename"] == "points.csv"
    assert (uploaded["target"], uploaded["task"], uploaded["n_samples"], uploaded["classes"]) == (
        "label", "classification", 4, ["a", "b"])
    assert client.dataset(uploaded["id"]) == uploaded
    listing = client.datasets()
    assert [d["id"] for d in listing["uploads"]] == [uploaded["id"]]
    assert "xor" in {d["name"] for d in listing["builtin"]}
    with pytest.raises(ApiError) as bad_target:
        client.upload_dataset(path, target="nope")
    assert bad_target.value.status == 422 and bad_target.value.fields[0]["field"] == "target"


def test_a_bad_spec_is_a_422_naming_the_field(client, spec):
    with pytest.raises(ApiError) as invalid:
        client.submit(spec | {"optimizer": {"name": "sgd", "lr": -1}})
    error = invalid.value
    assert (error.status, error.code) == (422, "invalid")
    assert "optimizer.lr" in [field["field"] for field in error.fields]
    assert "HTTP 422" in str(error)


def test_tokens_401_for_a_bad_one_and_403_for_too_little_scope(server, spec):
    with server.client(None) as anonymous, pytest.raises(ApiError) as missing:
        list(anonymous.runs())
    assert missing.value.status == 401
    with Client(server.url, "ty_not-a-token") as wrong, pytest.raises(ApiError) as unknown:
        wrong.run("0" * 32)
    assert (unknown.value.status, unknown.value.code) == (401, "unauthorized")
    with server.client("read") as reader, pytest.raises(ApiError) as forbidden:
        reader.submit(spec)
    assert forbidden.value.status == 403
    with server.client(None) as anonymous:  # health and readiness need no token
        assert anonymous.health() == {"status": "ok"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_server_is_a_clear_error():
    url = f"http://127.0.0.1:{_free_port()}"
    with Client(url, timeout=2) as client, pytest.raises(Unreachable) as unreachable:
        client.health()
    assert f"cannot reach Trainyard at {url}" in str(unreachable.value)
    assert isinstance(unreachable.value, ClientError)


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A proxy in front of a stopped service: an HTML 502 page."""

    def do_GET(self) -> None:
        body = b"<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_an_error_page_that_is_not_json_gives_an_api_error_from_its_status():
    proxy = http.server.HTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        with Client(f"http://127.0.0.1:{proxy.server_port}") as client, pytest.raises(ApiError) as bad_gateway:
            client.health()
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert (bad_gateway.value.status, bad_gateway.value.code) == (502, "http_502")
    assert "502 Bad Gateway" in bad_gateway.value.message


class _Restarting(http.server.BaseHTTPRequestHandler):
    """A service whose database is restarting: ``503`` with ``Retry-After`` for its first ``failures`` requests."""

    failures = 2
    retry_after = "1"
    seen: list[tuple[str, str | None]] = []

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.headers.get("Idempotency-Key")))
        if len(self.seen) <= self.failures:
            body, status = b'{"error": {"code": "unavailable", "message": "restarting", "fields": []}}', 503
        else:
            body, status = b'{"id": "0", "status": "ok"}', 200
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", self.retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def restarting() -> Iterator[type[_Restarting]]:
    """A restarting service on a free port (``handler.url``); its handler class counts the requests it saw."""
    handler = type("Handler", (_Restarting,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler
    server.shutdown()
    server.server_close()


def test_reads_and_submits_wait_out_a_503_for_its_retry_after(restarting):
    with Client(restarting.url) as client:
        started = time.monotonic()
        assert client.run("0")["status"] == "ok"
        assert time.monotonic() - started >= 2 * 1.0  # Retry-After: 1, twice
        restarting.seen.clear()
        client.submit({"dataset": {"name": "xor"}})
    methods, keys = zip(*restarting.seen)
    assert methods == ("POST",) * 3 and len(set(keys)) == 1 and keys[0]  # the same key each time


def test_what_is_not_safe_to_repeat_is_sent_once(restarting):
    restarting.retry_after = "0"
    with Client(restarting.url) as client:
        with pytest.raises(ApiError) as refused:
            client.cancel("0")  # a POST without an idempotency key
        assert refused.value.status == 503 and len(restarting.seen) == 1
        with pytest.raises(ApiError):
            client.ready()  # its 503 is the answer
        assert len(restarting.seen) == 2


def test_retrying_stops_at_the_deadline(restarting):
    restarting.failures, restarting.retry_after = 10**6, "0"
    with Client(restarting.url, retry_for=0.5) as client:
        started = time.monotonic()
        with pytest.raises(ApiError) as unavailable:
            client.run("0")
    assert unavailable.value.code == "unavailable" and 0.5 <= time.monotonic() - started < 5
    assert len(restarting.seen) > 1


def test_retry_after_takes_seconds_or_a_date():
    def answer(value: str | None) -> httpx.Response:
        return httpx.Response(503, headers={} if value is None else {"Retry-After": value})

    soon = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30), usegmt=True)
    assert retry_after(answer("7")) == 7.0
    assert 25 < retry_after(answer(soon)) <= 30
    assert retry_after(answer("Wed, 21 Oct 2015 07:28:00 GMT")) == 0.0  # a date gone by
    assert retry_after(answer(None)) == retry_after(answer("soon")) == RETRY_PAUSE
