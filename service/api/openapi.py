"""The API's OpenAPI 3.0 document (``GET /openapi.json``) and its interactive page (``GET /docs``).

The request models come from the code that validates requests: the job spec
is :class:`trainer.TrainSpec`'s JSON Schema and the ``PATCH`` body
:class:`~trainyard.service.api.schemas.RunPatch`'s, turned from pydantic's JSON Schema
(draft 2020-12) into OpenAPI 3.0's dialect by :func:`openapi30`.  The
document is 3.0 rather than 3.1 because the interactive page, Swagger UI from
the ``swagger-ui-bundle`` package (served from the installed package, never a
CDN), renders 3.0.  The tests fuzz the whole API against this document with
schemathesis, so a route and its description cannot drift apart unnoticed.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from swagger_ui_bundle import swagger_ui_path

from trainyard.service.api.compare import DEFAULT_FIELDS, DEFAULT_MAX_POINTS
from trainyard.service.api.datasets import TASKS
from trainyard.service.api.runs import MAX_POINTS
from trainyard.service.api.schemas import RunPatch
from trainyard.service.comparison import MAX_RUNS
from trainyard.service.errors import invalid_parameter
from trainyard.service.storage import repo
from trainyard.service.storage.models import RUN_STATUSES, SUMMARY_FIELDS
from trainyard.service.sweeps import MAX_SWEEP_RUNS, SweepRequest
from trainyard.service.sweeps import METRICS as SWEEP_METRICS
from trainyard.trainer import TrainSpec

bp = Blueprint("openapi", __name__, static_folder=swagger_ui_path, static_url_path="/docs/static")

REF = "#/components/schemas/{model}"


# --------------------------------------------------------------------------- JSON Schema 2020-12 -> OpenAPI 3.0


#: JSON Schema keywords OpenAPI 3.0 does not have (dropped: the server still checks them).
UNSUPPORTED = frozenset(("propertyNames", "patternProperties"))


def openapi30(schema: Any) -> Any:
    """A pydantic JSON Schema in OpenAPI 3.0's dialect.

    - keywords 3.0 lacks (:data:`UNSUPPORTED`) are dropped;

    - ``anyOf: [X, {"type": "null"}]`` becomes X with ``nullable: true``;
    - ``const: v`` becomes ``enum: [v]``;
    - numeric ``exclusiveMinimum``/``exclusiveMaximum`` become ``minimum``/``maximum`` with the boolean flag.
    """
    if isinstance(schema, list):
        return [openapi30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: openapi30(value) for key, value in schema.items() if key not in UNSUPPORTED}
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(out.get(flag), int | float) and not isinstance(out[flag], bool):
            out[bound], out[flag] = out[flag], True
    variants = out.get("anyOf")
    if variants and {"type": "null"} in variants:
        rest = [variant for variant in variants if variant != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            out = {**rest[0], **out}
        elif len(rest) == 1:
            out["allOf"] = rest
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    return out


def _model_schemas(*models: Any) -> dict[str, Any]:
    """The components of pydantic models (and the models they use), in OpenAPI 3.0's dialect."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {name: openapi30(schema) for name, schema in schemas.items()}


# --------------------------------------------------------------------------- the document's parts


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
STRING = {"type": "string"}
TIME = _nullable({"type": "string", "format": "date-time"})
ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}

RESPONSE_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "fields"],
                "properties": {
                    "code": STRING,
                    "message": STRING,
                    "fields": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["field", "message"],
                            "properties": {"field": STRING, "message": STRING},
                        },
                    },
                },
            }
        },
    },
    "Run": {
        "type": "object",
        "required": ["id", "name", "status", "spec", "tags", "notes", "created_at", "epochs_done", "summary"],
        "properties": {
            "id": ID,
            "name": STRING,
            "status": {"type": "string", "enum": list(RUN_STATUSES)},
            "spec": _ref("TrainSpec"),
            "tags": {"type": "array", "items": STRING},
            "notes": STRING,
            "sweep_id": _nullable(STRING),
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": TIME,
            "finished_at": TIME,
            "epochs_done": INTEGER,
            "epochs_total": INTEGER,
            "cancel_requested": {"type": "boolean"},
            "attempts": INTEGER,
            "error": _nullable(STRING),
            "summary": {
                "type": "object",
                "description": "Final and best metrics (null until known); best_epoch is the epoch of best_val_loss.",
                "properties": {name: _nullable(INTEGER if name == "best_epoch" else NUMBER) for name in SUMMARY_FIELDS},
            },
        },
    },
    "RunList": {
        "type": "object",
        "required": ["runs", "next"],
        "properties": {
            "runs": {"type": "array", "items": _ref("Run")},
            "next": _nullable({"type": "string", "description": "The cursor of the next page; null on the last."}),
        },
    },
    "Epochs": {
        "type": "object",
        "required": ["epochs"],
        "properties": {
            "epochs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["epoch"],
                    "properties": {
                        "epoch": INTEGER,
                        **{name: _nullable(NUMBER) for name in repo.EPOCH_METRICS},
                        **{name: {"type": "array", "items": _nullable(NUMBER)} for name in repo.EPOCH_LISTS},
                    },
                },
            }
        },
    },
    "Weights": {
        "type": "object",
        "required": ["epoch", "layers"],
        "properties": {
            "epoch": INTEGER,
            "layers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["W", "b"],
                    "properties": {
                        "W": {"type": "array", "items": {"type": "array", "items": _nullable(NUMBER)}},
                        "b": {"type": "array", "items": _nullable(NUMBER)},
                    },
                },
            },
        },
    },
    "Dataset": {
        "type": "object",
        "required": ["id", "name", "target", "task", "n_samples", "n_features"],
        "properties": {
            "id": ID,
            "name": STRING,
            "filename": STRING,
            "target": STRING,
            "task": {"type": "string", "enum": ["classification", "regression"]},
            "n_samples": INTEGER,
            "n_features": INTEGER,
            "classes": _nullable({"type": "array", "items": {}}),
            "size_bytes": INTEGER,
            "sha256": STRING,
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "Datasets": {
        "type": "object",
        "required": ["builtin", "uploads"],
        "properties": {
            "builtin": {"type": "array", "items": {"type": "object"}},
            "uploads": {"type": "array", "items": _ref("Dataset")},
        },
    },
    "Comparison": {
        "type": "object",
        "required": ["runs", "params", "curves"],
        "properties": {
            "runs": {"type": "array", "items": _ref("Run")},
            "params": {
                "type": "object",
                "required": ["differ", "same"],
                "properties": {
                    "differ": {
                        "type": "object",
                        "description": "Dotted spec path -> one value per run (null where a run lacks it).",
                        "additionalProperties": {"type": "array", "items": {}},
                    },
                    "same": {"type": "object", "description": "Dotted spec path -> the value all runs share."},
                },
            },
            "curves": {
                "type": "object",
                "description": "Run id -> columns: epoch numbers and one array per field, null where missing.",
                "additionalProperties": {
                    "type": "object",
                    "required": ["epoch"],
                    "additionalProperties": {"type": "array", "items": _nullable(NUMBER)},
                },
            },
        },
    },
    "Sweep": {
        "type": "object",
        "required": ["id", "name", "method", "space", "spec", "created_at", "progress", "best"],
        "properties": {
            "id": ID,
            "name": STRING,
            "method": {"type": "string", "enum": ["grid", "random"]},
            "space": {"type": "object"},
            "n": _nullable(INTEGER),
            "seed": _nullable(INTEGER),
            "spec": {"type": "object", "description": "The base spec."},
            "created_at": {"type": "string", "format": "date-time"},
            "progress": {
                "type": "object",
                "description": "Runs in all, by status and finished; epochs done and to do of all runs.",
                "required": ["runs", "counts", "finished", "epochs_done", "epochs_total"],
                "properties": {
                    "runs": INTEGER,
                    "counts": {"type": "object", "properties": {status: INTEGER for status in RUN_STATUSES}},
                    "finished": INTEGER,
                    "epochs_done": INTEGER,
                    "epochs_total": INTEGER,
                },
            },
            "best": {
                "type": "object",
                "required": ["metric", "value", "run"],
                "properties": {"metric": STRING, "value": _nullable(NUMBER), "run": _nullable(ID)},
            },
            "runs": {"type": "array", "items": _ref("Run")},
        },
    },
    "SweepList": {
        "type": "object",
        "required": ["sweeps"],
        "properties": {"sweeps": {"type": "array", "items": _ref("Sweep")}},
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    "Readiness": {
        "type": "object",
        "required": ["database", "broker"],
        "properties": {
            "database": {"type": "string", "enum": ["ok", "unavailable"]},
            "broker": {"type": "string", "enum": ["ok", "unavailable"]},
            "error": {"type": "object", "description": "When not ready: code `not_ready` and a message."},
        },
    },
}

ERRORS = {
    "400": "A malformed query parameter or body (the error names it).",
    "401": "No token, or an unknown or revoked one.",
    "403": "The token's scope does not allow this.",
    "404": "No such run or dataset.",
    "409": "The run has already finished.",
    "413": "The body is larger than the limit.",
    "415": "The body is not of the expected content type.",
    "422": "The body is well-formed but invalid (the error names every field at fault).",
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(success: dict[str, Any], *errors: str, auth: bool = True) -> dict[str, Any]:
    codes = (("400", "401", "403") if auth else ("400",)) + errors
    out = dict(success)
    out.update({code: _json(_ref("Error"), ERRORS[code]) for code in sorted(set(codes))})
    return out


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


SWEEP_ID = {"name": "sweep_id", "in": "path", "required": True, "schema": ID, "description": "The sweep's id."}
RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": ID, "description": "The run's id."}
LIMITED_INT = {"type": "integer", "maximum": 2**31 - 1}


def _operation(summary: str, tag: str, responses: dict[str, Any], scope: str | None, **more: Any) -> dict[str, Any]:
    operation = {"summary": summary, "tags": [tag], "responses": responses, **more}
    if scope is None:
        operation["security"] = []
    else:
        operation["description"] = (operation.get("description", "") + f"\n\nNeeds a token of scope `{scope}`.").strip()
    return operation


def _paths() -> dict[str, Any]:
    run = _json(_ref("Run"), "The run.")
    fields = ", ".join(repo.EPOCH_FIELDS)
    metrics = ", ".join(repo.EPOCH_METRICS)
    sort_fields = ", ".join(repo.SORT_FIELDS)
    return {
        "/healthz": {"get": _operation("The process is up", "health", {"200": _json(_ref("Health"), "Up.")}, None)},
        "/readyz": {
            "get": _operation(
                "The database and the broker are reachable",
                "health",
                {"200": _json(_ref("Readiness"), "Ready."), "503": _json(_ref("Readiness"), "Not ready.")},
                None,
            )
        },
        "/api/runs": {
            "post": _operation(
                "Create a run from a job spec and queue it",
                "runs",
                _responses({"201": _json(_ref("Run"), "Created and queued.")}, "413", "415", "422"),
                "write",
                requestBody={"required": True, "content": {"application/json": {"schema": _ref("TrainSpec")}}},
            ),
            "get": _operation(
                "List runs: filtered, sorted, a page at a time",
                "runs",
                _responses({"200": _json(_ref("RunList"), "A page of runs.")}),
                "read",
                parameters=[
                    _query("status", {"type": "string", "enum": list(RUN_STATUSES)}, "Only runs in this status."),
                    _query("tag", STRING, "Only runs with this tag."),
                    _query("sweep", STRING, "Only runs of this sweep."),
                    _query("q", STRING, "Only runs whose name contains this (case-insensitive)."),
                    _query("sort", STRING, f"One of {sort_fields}; prefix '-' for descending (default -created_at)."),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}, "Page size (bounded)."),
                    _query("cursor", STRING, "The `next` of the previous page."),
                ],
            ),
        },
        "/api/runs/{run_id}": {
            "parameters": [RUN_ID],
            "get": _operation("A run", "runs", _responses({"200": run}, "404"), "read"),
            "patch": _operation(
                "Rename a run, or change its tags or notes",
                "runs",
                _responses({"200": run}, "404", "413", "415", "422"),
                "write",
                requestBody={"required": True, "content": {"application/json": {"schema": _ref("RunPatch")}}},
            ),
            "delete": _operation(
                "Delete a run with its epochs, weights and checkpoint",
                "runs",
                _responses({"204": {"description": "Deleted."}}, "404"),
                "write",
            ),
        },
        "/api/runs/{run_id}/cancel": {
            "parameters": [RUN_ID],
            "post": _operation(
                "Cancel a run: a queued run at once, a running one at its worker's next flush",
                "runs",
                _responses({"200": run}, "404", "409"),
                "write",
            ),
        },
        "/api/runs/{run_id}/epochs": {
            "parameters": [RUN_ID],
            "get": _operation(
                "A run's epochs, optionally since an epoch and downsampled",
                "runs",
                _responses({"200": _json(_ref("Epochs"), "The epochs, in order.")}, "404"),
                "read",
                parameters=[
                    _query("since", LIMITED_INT, "Only epochs after this one."),
                    _query("fields", STRING, f"Comma-separated, of {fields} (default: all)."),
                    _query(
                        "max_points",
                        {"type": "integer", "minimum": 2, "maximum": MAX_POINTS},
                        "At most this many epochs: each bucket keeps its minimum and maximum, so spikes stay.",
                    ),
                ],
            ),
        },
        "/api/runs/{run_id}/weights": {
            "parameters": [RUN_ID],
            "get": _operation(
                "A run's weights at an epoch (default: the latest stored)",
                "runs",
                _responses(
                    {
                        "200": {
                            "description": "The weights, per layer W (fan_in x fan_out) and b, or the .npz file.",
                            "content": {
                                "application/json": {"schema": _ref("Weights")},
                                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                            },
                        }
                    },
                    "404",
                ),
                "read",
                parameters=[
                    _query("epoch", LIMITED_INT, "The epoch (default: the latest with weights)."),
                    _query("format", {"type": "string", "enum": ["json", "npz"]}, "json (default) or npz."),
                ],
            ),
        },
        "/api/runs/{run_id}/export": {
            "parameters": [RUN_ID],
            "get": _operation(
                "A run's every epoch as CSV, or the run and every epoch as JSON (a download)",
                "runs",
                _responses(
                    {
                        "200": {
                            "description": "CSV: epoch, the metrics, then weight_norm_<i> and grad_norm_<i> per layer. "
                            'JSON: {"run": ..., "epochs": [...]}.',
                            "content": {
                                "text/csv": {"schema": {"type": "string"}},
                                "application/json": {"schema": {"type": "object"}},
                            },
                        }
                    },
                    "404",
                ),
                "read",
                parameters=[_query("format", {"type": "string", "enum": ["csv", "json"]}, "csv (default) or json.")],
            ),
        },
        "/api/datasets": {
            "post": _operation(
                "Upload a CSV dataset (header row, numeric features, a target column)",
                "datasets",
                _responses({"201": _json(_ref("Dataset"), "Stored and described.")}, "413", "415", "422"),
                "write",
                requestBody={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {"type": "string", "format": "binary"},
                                    "name": STRING,
                                    "target": {"type": "string", "description": "Default: the last column."},
                                    "task": {"type": "string", "enum": list(TASKS)},
                                },
                            }
                        }
                    },
                },
            ),
            "get": _operation(
                "The built-in datasets and the uploads",
                "datasets",
                _responses({"200": _json(_ref("Datasets"), "Every dataset a spec can name.")}),
                "read",
            ),
        },
        "/api/datasets/{dataset_id}": {
            "parameters": [{"name": "dataset_id", "in": "path", "required": True, "schema": ID}],
            "get": _operation(
                "An uploaded dataset", "datasets", _responses({"200": _json(_ref("Dataset"), "It.")}, "404"), "read"
            ),
        },
        "/api/sweeps": {
            "post": _operation(
                "Create a sweep: a base spec and a grid or random search space, all its runs queued at once",
                "sweeps",
                _responses({"201": _json(_ref("Sweep"), "Created, with its runs queued.")}, "413", "415", "422"),
                "write",
                description="Every run's spec is validated first: one invalid point refuses the whole sweep "
                f"(fields `points.<i>.<path>`). At most {MAX_SWEEP_RUNS} runs.",
                requestBody={"required": True, "content": {"application/json": {"schema": _ref("SweepRequest")}}},
            ),
            "get": _operation(
                "List sweeps, newest first, with their progress",
                "sweeps",
                _responses({"200": _json(_ref("SweepList"), "The sweeps.")}),
                "read",
                parameters=[_query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "At most (100).")],
            ),
        },
        "/api/sweeps/{sweep_id}": {
            "parameters": [SWEEP_ID],
            "get": _operation(
                "A sweep: its progress, its runs and the best run by a metric",
                "sweeps",
                _responses({"200": _json(_ref("Sweep"), "The sweep.")}, "404"),
                "read",
                parameters=[
                    _query(
                        "metric",
                        {"type": "string", "enum": list(SWEEP_METRICS)},
                        "Ranks the runs (default val_loss with held-out data, else train_loss).",
                    )
                ],
            ),
        },
        "/api/sweeps/{sweep_id}/cancel": {
            "parameters": [SWEEP_ID],
            "post": _operation(
                "Cancel a sweep's queued and running runs",
                "sweeps",
                _responses({"200": _json(_ref("Sweep"), "The sweep.")}, "404"),
                "write",
            ),
        },
        "/api/compare": {
            "get": _operation(
                "Compare runs: the parameters that differ and their downsampled curves",
                "runs",
                _responses({"200": _json(_ref("Comparison"), "The comparison.")}, "404"),
                "read",
                parameters=[
                    {
                        "name": "runs",
                        "in": "query",
                        "required": True,
                        "schema": STRING,
                        "description": f"Comma-separated run ids (1 to {MAX_RUNS}).",
                    },
                    _query("fields", STRING, f"Comma-separated, of {metrics} (default {', '.join(DEFAULT_FIELDS)})."),
                    _query(
                        "max_points",
                        {"type": "integer", "minimum": 2, "maximum": MAX_POINTS},
                        f"Points per curve (default {DEFAULT_MAX_POINTS}).",
                    ),
                ],
            ),
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document (built once; callers get a copy)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Trainyard API",
            "version": "1",
            "description": "Train neural networks and track the experiments. Every `/api` call needs "
            "`Authorization: Bearer <token>` (`trainyard token create --scope read|write|admin`) "
            "unless the server runs with `TRAINYARD_AUTH=off`.",
        },
        "paths": _paths(),
        "components": {
            "schemas": {**_model_schemas(TrainSpec, RunPatch, SweepRequest), **RESPONSE_SCHEMAS},
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"token": []}],
    }


_RULE_PART = re.compile(r"<(?:\w+:)?(\w+)>")


@functools.cache
def query_parameters() -> dict[tuple[str, str], frozenset[str]]:
    """``(METHOD, Flask rule) -> the query parameters the document lists for it``."""
    out = {}
    for path, item in document()["paths"].items():
        rule = re.sub(r"\{(\w+)\}", r"<\1>", path)
        for method, operation in item.items():
            if method != "parameters":
                names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
                out[method.upper(), rule] = frozenset(names)
    return out


@bp.before_app_request
def refuse_unknown_parameters() -> None:
    """400 for a query parameter the document does not list: a misspelt filter must not silently match everything."""
    if request.url_rule is None:
        return
    allowed = query_parameters().get((request.method, _RULE_PART.sub(r"<\1>", request.url_rule.rule)))
    if allowed is None:
        return
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise invalid_parameter(unknown[0], f"unknown query parameter (this endpoint takes: {known})")


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(copy.deepcopy(document()))


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Trainyard API</title>
<link rel="stylesheet" href="{css}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{bundle}"></script>
<script>
window.ui = SwaggerUIBundle({{url: "{spec}", dom_id: "#swagger-ui", persistAuthorization: true, deepLinking: true}});
</script>
</body>
</html>
"""


@bp.get("/docs")
def docs() -> Response:
    """Swagger UI on this server's document: try every call with a token (the Authorize button)."""
    static = functools.partial(url_for, "openapi.static")
    page = PAGE.format(
        css=static(filename="swagger-ui.css"),
        bundle=static(filename="swagger-ui-bundle.js"),
        spec=url_for("openapi.openapi_json"),
    )
    return Response(page, mimetype="text/html")
