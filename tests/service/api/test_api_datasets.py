"""The datasets endpoints: upload a CSV, list built-ins and uploads, read one; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from trainyard.service.api import datasets
from trainyard.service.storage import repo
from trainyard.service.storage.models import Dataset
from trainyard.trainer.datasets import BUILTIN_NAMES, builtin_info

CLASSES_CSV = b"x1,x2,label\n0,0,no\n0,1,yes\n1,0,yes\n1,1,yes\n"
REGRESSION_CSV = b"x,y\n0,0.5\n1,1.5\n2,2.5\n3,3.5\n"
MIDDLE_CSV = b"a,label,b\n0.1,1,2\n0.2,0,3\n0.3,1,4\n0.4,0,5\n"

#: The keys of an uploaded dataset's JSON.
KEYS = set("id name filename target task n_samples n_features classes size_bytes sha256 created_at".split())


@pytest.fixture
def dataset_count(Session: sessionmaker[OrmSession]) -> Callable[[], int]:
    """``dataset_count()``: how many uploaded datasets the database holds."""

    def count() -> int:
        with Session() as s:
            return s.scalar(select(func.count()).select_from(Dataset))

    return count


BOUNDARY = "trainyard-test-boundary"


def _multipart(content: bytes | None = CLASSES_CSV, filename: str = "flags.csv", **fields: str) -> bytes:
    """A ``multipart/form-data`` body with the text ``fields`` and ``content`` as the file part ``file``.

    Built by hand: the test client spools a body over 500 kB to a temporary file it never closes.
    """
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    if content is not None:
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        parts.append(head.encode() + b"Content-Type: text/csv\r\n\r\n" + content + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def upload(client, content: bytes | None = CLASSES_CSV, filename: str = "flags.csv", **fields: str):
    return client.post("/api/datasets", data=_multipart(content, filename, **fields), content_type=MULTIPART)


# --------------------------------------------------------------------------- uploads


def test_upload_with_string_labels(api, Session):
    response = upload(api)

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) == KEYS
    assert response.headers["Location"] == f"/api/datasets/{body['id']}"
    assert (body["name"], body["filename"]) == ("flags", "flags.csv")
    assert (body["target"], body["task"]) == ("label", "classification")
    assert (body["n_samples"], body["n_features"], body["classes"]) == (4, 2, ["no", "yes"])
    assert body["size_bytes"] == len(CLASSES_CSV) and body["sha256"] == hashlib.sha256(CLASSES_CSV).hexdigest()
    assert dt.datetime.fromisoformat(body["created_at"]).tzinfo == dt.timezone.utc
    with Session() as s:
        stored = repo.get_dataset(session=s, dataset_id=body["id"], with_content=True)
        assert stored.content == CLASSES_CSV


def test_upload_a_regression_target(api):
    response = upload(api, REGRESSION_CSV, "line.csv", name="a line", task="regression")

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["name"], body["target"], body["task"], body["classes"]) == ("a line", "y", "regression", None)
    assert (body["n_samples"], body["n_features"]) == (4, 1)


def test_upload_auto_detects_a_non_integer_target_as_regression(api):
    body = upload(api, REGRESSION_CSV, "line.csv").get_json()

    assert body["task"] == "regression" and body["classes"] is None


def test_upload_with_the_target_in_the_middle(api):
    response = upload(api, MIDDLE_CSV, "middle.csv", target="label")

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["target"], body["task"]) == ("label", "classification")
    assert (body["n_features"], body["classes"]) == (2, ["0", "1"])


def test_upload_keeps_only_the_base_name_of_the_file(api):
    body = upload(api, filename="C:\\data\\dir/flags.v2.csv").get_json()

    assert (body["filename"], body["name"]) == ("flags.v2.csv", "flags.v2")


def test_upload_accepts_a_body_over_the_json_limit(api):
    rows = b"".join(b"%d,%d,%d\n" % (i, i % 7, i % 2) for i in range(120_000))
    content = b"a,b,label\n" + rows
    assert len(content) > 1024 * 1024

    response = upload(api, content, "big.csv")

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["n_samples"] == 120_000


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("content", "fields", "field", "words"),
    [
        (b"", {}, "file", "empty"),
        (b"a,b\n1,2\n3\n", {}, "file", "line 3"),
        (b"a,b,c\n1,2,x\n1,oops,y\n", {}, "file", "line 3, column 'b'"),
        (b"a,b\n1,2\n", {"target": "nope"}, "target", "'nope'"),
        (b"a,b\n1,x\n2,y\n", {"task": "regression"}, "target", "line 2, column 'b'"),
        (b"a,b\n1,x\n2,x\n", {}, "target", "one class"),
        (b"a,b\n", {}, "file", "no data rows"),
        (b"a,b\n1,\xff\n", {}, "file", "UTF-8"),
        (b"a,b\n1,2\x00\n", {}, "file", "NUL"),
        (b"a,b\n1,0\n2,1\n", {"task": "cluster"}, "task", "auto"),
        (b"a,b\n1,0\n2,1\n", {"name": ""}, "name", "at least 1 character"),
        (b"a,b\n1,0\n2,1\n", {"name": "n" * 201}, "name", "at most 200 characters"),
        (b"a,b\n1,0\n2,1\n", {"target": "b\x00"}, "target", "NUL"),
        (b"a," + b"t" * 201 + b"\n1,0\n2,1\n", {}, "target", "longer than 200"),
        (b"a,b\n1,0\n2,nan\n", {}, "file", "line 3, column 'b'"),
    ],
    ids=[
        "empty",
        "ragged-row",
        "non-numeric-cell",
        "unknown-target",
        "non-numeric-regression-target",
        "one-class",
        "no-rows",
        "not-utf8",
        "nul-byte",
        "bad-task",
        "empty-name",
        "long-name",
        "nul-in-target",
        "long-target-name",
        "nan-target",
    ],
)
def test_upload_refuses_a_bad_file_or_field(api, assert_error, dataset_count, content, fields, field, words):
    error = assert_error(upload(api, content, "bad.csv", **fields), 422, "invalid", field)

    assert words in error["message"], error
    assert dataset_count() == 0


def test_upload_refuses_a_long_file_name(api, assert_error, dataset_count):
    assert_error(upload(api, filename="f" * 300 + ".csv"), 422, "invalid", "file")
    assert dataset_count() == 0


def test_upload_without_the_file_field_is_400(api, assert_error, dataset_count):
    assert_error(upload(api, None, name="x"), 400, field="file")
    assert dataset_count() == 0


def test_upload_with_the_csv_in_a_text_field_is_400(api, assert_error, dataset_count):
    body = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"\r\n\r\nx,y\r\n--{BOUNDARY}--\r\n'

    response = api.post("/api/datasets", data=body.encode(), content_type=MULTIPART)

    assert_error(response, 400, field="file")
    assert dataset_count() == 0


@pytest.mark.parametrize(
    ("kwargs"),
    [
        {"json": {"file": "x,y\n1,2\n"}},
        {"data": CLASSES_CSV, "content_type": "text/csv"},
        {"data": {"file": "a"}, "content_type": "application/x-www-form-urlencoded"},
        {},
    ],
    ids=["json", "text-csv", "urlencoded", "no-body"],
)
def test_upload_that_is_not_multipart_is_415(api, assert_error, dataset_count, kwargs):
    assert_error(api.post("/api/datasets", **kwargs), 415, "unsupported_media_type")
    assert dataset_count() == 0


def test_upload_with_a_broken_multipart_body_is_4xx(api, assert_error, dataset_count):
    response = api.post("/api/datasets", data=b"--xyz\r\nnot a part", content_type="multipart/form-data; boundary=xyz")

    assert_error(response, 400, field="file")
    assert dataset_count() == 0


def test_upload_over_the_limit_is_413(api, assert_error, dataset_count):
    content = b"a,b\n" + b"1,0\n" * (datasets.UPLOAD_LIMIT // 4 + 1)

    error = assert_error(upload(api, content, "huge.csv"), 413, "too_large", "file")

    assert "16 MiB" in error["message"]
    assert dataset_count() == 0


def test_upload_with_a_read_token_is_403(reader, assert_error, dataset_count):
    assert_error(upload(reader), 403, "forbidden")
    assert dataset_count() == 0


@pytest.mark.parametrize("token", [None, "revoked", "ty_wrong"])
def test_upload_without_a_valid_token_is_401(client, tokens, assert_error, dataset_count, token):
    headers = {} if token is None else {"Authorization": f"Bearer {tokens.get(token, token)}"}
    response = client.post("/api/datasets", data=_multipart(), content_type=MULTIPART, headers=headers)

    assert_error(response, 401, "unauthorized")
    assert dataset_count() == 0


# --------------------------------------------------------------------------- reading


def test_list_shows_builtins_and_uploads_newest_first(api, reader):
    first = upload(api).get_json()
    second = upload(api, REGRESSION_CSV, "line.csv").get_json()

    response = reader.get("/api/datasets")

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"builtin", "uploads"}
    assert body["builtin"] == builtin_info()
    assert [entry["name"] for entry in body["builtin"]] == list(BUILTIN_NAMES)
    assert body["uploads"] == [second, first]


def test_list_without_uploads(reader):
    body = reader.get("/api/datasets").get_json()

    assert body["uploads"] == [] and len(body["builtin"]) == len(BUILTIN_NAMES)


def test_get_dataset(api, reader):
    created = upload(api).get_json()

    response = reader.get(f"/api/datasets/{created['id']}")

    assert response.status_code == 200
    assert response.get_json() == created


@pytest.mark.parametrize("path", ["/api/datasets/" + "0" * 32, "/api/datasets/nope", "/api/datasets/" + "A" * 32])
def test_get_unknown_dataset_is_404(reader, assert_error, path):
    assert_error(reader.get(path), 404, "not_found")


@pytest.mark.parametrize("path", ["/api/datasets", "/api/datasets/" + "0" * 32])
def test_reading_needs_a_token(client, assert_error, path):
    assert_error(client.get(path), 401, "unauthorized")


# --------------------------------------------------------------------------- runs on an upload


def test_an_uploaded_dataset_can_be_named_in_a_run_spec(api, spec, sent):
    dataset_id = upload(api, MIDDLE_CSV, "middle.csv", target="label").get_json()["id"]
    spec["dataset"] = {"upload": dataset_id, "test_fraction": 0.25}

    response = api.post("/api/runs", json=spec)

    assert response.status_code == 201, response.get_json()
    run = response.get_json()
    assert run["spec"]["dataset"] == {"upload": dataset_id, "test_fraction": 0.25, "standardize": False}
    assert sent() == [("worker.tasks.train_run", [run["id"]])]
