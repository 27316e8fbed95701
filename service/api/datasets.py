"""The datasets API under ``/api``: upload a CSV, list the built-in and uploaded datasets, read one upload.

An upload is ``multipart/form-data`` with the CSV in the field ``file`` and the
optional fields ``name``, ``target`` and ``task``.  It is validated by the
trainer's own CSV loader (:func:`trainyard.trainer.load_csv`), so a file the API accepts
is one the worker can train on; a refused upload writes nothing.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from sqlalchemy.orm import Session
from typing_extensions import TypedDict
from werkzeug.datastructures import FileStorage

from trainyard.service.api.declare import declare
from trainyard.service.api.schemas import DatasetForm
from trainyard.service.auth import requires
from trainyard.service.context import services, transaction
from trainyard.service.documents import DatasetDocument, dataset_json
from trainyard.service.errors import ApiError, invalid_field, not_found
from trainyard.service.storage import repo
from trainyard.service.storage.models import MAX_NAME_LENGTH
from trainyard.trainer import DatasetError, load_csv
from trainyard.trainer.datasets import builtin_info, shape_of

bp = Blueprint("datasets", __name__, url_prefix="/api")

TAGS = ("datasets",)

#: Largest upload (the whole multipart body), above the app's 1 MiB limit for JSON bodies.
UPLOAD_LIMIT = 16 * 1024 * 1024

#: A loader message about the target column rather than the file's cells (names in quotes removed first).
_TARGET_PROBLEM = re.compile(r"target column|target cell|regression target")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def _filename(upload: FileStorage) -> str:
    """The upload's file name without directories; 422 when it is too long or holds a NUL character."""
    filename = posixpath.basename((upload.filename or "").replace("\\", "/"))
    if "\x00" in filename or len(filename) > MAX_NAME_LENGTH:
        raise invalid_field("file", f"the file name must be at most {MAX_NAME_LENGTH} characters without NUL")
    return filename


def _load_error(exc: DatasetError) -> ApiError:
    """A 422 with the loader's message, naming ``target`` when the target column is at fault, else ``file``."""
    message = str(exc)
    field = "target" if _TARGET_PROBLEM.search(_QUOTED.sub("", message)) else "file"
    return invalid_field(field, message)


def _check_room(s: Session, size: int) -> None:
    """413 if ``size`` more bytes would take the uploads past ``TRAINYARD_MAX_DATASETS_GB``."""
    room = services().settings.max_datasets_bytes - repo.datasets_bytes(session=s)
    if size > room:
        message = (f"the uploads may take {services().settings.max_datasets_gb:g} GiB together "
                   f"(TRAINYARD_MAX_DATASETS_GB) and have {max(room, 0):,} bytes left; this file has {size:,}")
        raise ApiError(413, "storage_full", f"file: {message}", [{"field": "file", "message": message}])


def _last_column(content: bytes) -> str:
    """The name of the last column of a CSV the loader has accepted (its default target)."""
    reader = csv.reader(io.StringIO(content.decode("utf-8-sig"), newline=""), strict=True, skipinitialspace=True)
    header = next(row for row in reader if "".join(row).strip())
    return header[-1].strip()


def _validated(content: bytes, target: str | None, task: str, name: str) -> dict[str, Any]:
    """``repo.create_dataset``'s description of ``content`` as the trainer loads it; 422 when it cannot."""
    if not content:
        raise invalid_field("file", "the file is empty")
    if b"\x00" in content:
        raise invalid_field("file", "the file holds NUL bytes: it is not a CSV text file")
    try:
        dataset = load_csv(content, target=target, task=task, name=name)  # type: ignore[arg-type]
    except DatasetError as exc:
        raise _load_error(exc) from None
    target_name = target.strip() if target is not None else _last_column(content)
    if len(target_name) > MAX_NAME_LENGTH:
        raise invalid_field("target", f"the target column's name is longer than {MAX_NAME_LENGTH} characters")
    return {
        "target": target_name,
        "task": dataset.task,
        "n_samples": dataset.n_samples,
        "n_features": dataset.n_features,
        "classes": list(dataset.classes) if dataset.task == "classification" else None,
        "class_counts": list(shape_of(dataset).counts) if dataset.task == "classification" else None,
    }


@bp.post("/datasets")
@requires("write")
@declare(form=DatasetForm, files=("file",), upload_limit=UPLOAD_LIMIT, tags=TAGS,
         responses={201: DatasetDocument, 413: "The upload is too large, or the uploads would pass "
                    "`TRAINYARD_MAX_DATASETS_GB` together."},
         summary="Upload a CSV dataset: a header row, numeric features, a target column",
         description="Checked by the trainer's own CSV loader, so a file accepted here is one a worker can train on.")
def create_dataset(form: DatasetForm) -> tuple[Response, int, dict[str, str]]:
    upload = request.files["file"]
    filename = _filename(upload)
    stem = posixpath.splitext(filename)[0]
    name = form.name or (stem if stem.strip() else "upload")
    try:
        content = upload.read()
    finally:
        upload.close()
    described = _validated(content, form.target, form.task, name)
    with transaction() as s:
        _check_room(s, len(content))
        dataset = repo.create_dataset(session=s, name=name, filename=filename, content=content, **described)
        body = dataset_json(dataset)
    return jsonify(body), 201, {"Location": url_for(".get_dataset", dataset_id=body["id"])}


class Datasets(TypedDict):
    """The built-in datasets (with what each holds) and the uploads, newest first."""

    builtin: list[dict[str, Any]]
    uploads: list[DatasetDocument]


@bp.get("/datasets")
@requires("read")
@declare(responses={200: Datasets}, tags=TAGS, summary="The built-in datasets and the uploads")
def list_datasets() -> Response:
    with transaction(read_only=True) as s:
        uploads = [dataset_json(dataset) for dataset in repo.list_datasets(session=s)]
    return jsonify(builtin=builtin_info(), uploads=uploads)


@bp.get("/datasets/<id:dataset_id>")
@requires("read")
@declare(responses={200: DatasetDocument}, tags=TAGS, summary="An uploaded dataset")
def get_dataset(dataset_id: str) -> Response:
    with transaction(read_only=True) as s:
        dataset = repo.get_dataset(session=s, dataset_id=dataset_id)
        if dataset is None:
            raise not_found(f"no dataset {dataset_id}")
        body = dataset_json(dataset)
    return jsonify(body)
