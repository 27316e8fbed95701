"""The API's OpenAPI 3.1 document (``GET /openapi.json``), built from the views' declarations, and ``GET /docs``.

Every API view declares its query, body and responses once (:mod:`.declare`);
this module walks the API's routes and writes those declarations down as
OpenAPI 3.1, whose schemas are JSON Schema 2020-12: pydantic's own, from one
pass over every declared type (so nested models become shared components),
unconverted.  What a declaration implies is added for every operation: 400
for a query parameter (every view refuses unknown ones), 401 and 403 where a
token is needed, 404 where the path names a row, 413/415/422 where there is
a body.  The tests fuzz the whole API against this document with
schemathesis.

``/docs`` is Swagger UI 5, served from the ``flask-swagger-ui`` package's
files (never a CDN) and started by ``docs.js`` beside this module, with a
Content-Security-Policy that lets it load nothing from elsewhere and run no
inline script; a token typed into it is forgotten with the page.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, url_for
from markupsafe import escape
from pydantic import TypeAdapter
from werkzeug.routing import BaseConverter, Rule

from trainyard.service.api import BLUEPRINTS
from trainyard.service.api.declare import Declaration, IdConverter
from trainyard.service.errors import Error

#: Swagger UI's files, as the ``flask-swagger-ui`` package installs them.
SWAGGER_UI = resources.files("flask_swagger_ui") / "dist"

bp = Blueprint("openapi", __name__, static_folder=str(SWAGGER_UI), static_url_path="/docs/static")

REF = "#/components/schemas/{model}"
JSON = "application/json"
BINARY = {"type": "string", "format": "binary"}

INFO = {
    "title": "Trainyard API",
    "version": "1",
    "description": "Train neural networks and track the experiments. Every `/api` call needs "
    "`Authorization: Bearer <token>` (`trainyard token create --scope read|write|admin`) unless the server runs "
    "with `TRAINYARD_AUTH=off`. Every error is `{\"error\": {\"code\", \"message\", \"fields\"}}`.",
}

#: What the responses every operation may give mean.
IMPLIED = {
    400: "A query parameter or the body is malformed (the error names it); an unknown query parameter.",
    401: "No token, or an unknown or revoked one.",
    403: "The token's scope does not allow this.",
    404: "No such row.",
    413: "The body is larger than the limit.",
    415: "The body is not of the expected content type.",
    422: "The body is well-formed but invalid (the error names every field at fault).",
}


@functools.cache
def document() -> dict[str, Any]:
    """The document of every declared route of the API's blueprints (built once; treat it as read-only)."""
    app = Flask(__name__)
    app.url_map.converters["id"] = IdConverter
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return build_document(app)


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the declared views of ``app``."""
    operations = list(_declared(app))
    wanted = {(Error, "serialization")}
    for _, _, declaration, _ in operations:
        wanted |= {(model, "validation") for model in (declaration.query, declaration.body, declaration.form) if model}
        wanted |= {(kind, "serialization") for kind in _response_types(declaration) if kind not in (bytes, str)}
    keys = sorted(wanted, key=lambda key: (key[1], _name(key[0])))
    schemas, definitions = TypeAdapter.json_schemas(
        [((kind, mode), mode, TypeAdapter(kind)) for kind, mode in keys], ref_template=REF
    )
    components = dict(definitions.get("$defs", {}))

    def schema(kind: Any, mode: str) -> dict[str, Any]:
        if kind is bytes:
            return BINARY
        if kind is str:
            return {"type": "string"}
        return schemas[(kind, mode), mode]

    def resolved(found: dict[str, Any]) -> dict[str, Any]:
        ref = found.get("$ref")
        return components[ref.rsplit("/", 1)[1]] if ref else found

    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {JSON: {"schema": schema(Error, "serialization")}}}

    paths: dict[str, dict[str, Any]] = {}
    for rule, method, declaration, view in operations:
        parameters = [_path_parameter(name, converter) for name, converter in rule._converters.items()]  # noqa: SLF001
        if declaration.query is not None:
            parameters += _query_parameters(resolved(schema(declaration.query, "validation")))
        parameters += [{"name": header.name, "in": "header", "required": False, "description": header.description,
                        "schema": dict(header.schema)} for header in declaration.headers]
        scope = getattr(view, "required_scope", None)
        implied = {400} | ({401, 403} if scope else set()) | ({404} if rule.arguments else set())
        operation: dict[str, Any] = {"operationId": rule.endpoint.rpartition(".")[2], "summary": declaration.summary,
                                     "tags": list(declaration.tags)}
        description = declaration.description + (f"\n\nNeeds a token of scope `{scope}`." if scope else "")
        if description.strip():
            operation["description"] = description.strip()
        if parameters:
            operation["parameters"] = parameters
        if declaration.body is not None:
            body = schema(declaration.body, "validation")
            operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
            implied |= {413, 415, 422}
        if declaration.raw_body is not None:
            operation["requestBody"] = {"required": True, "content": {declaration.raw_body: {"schema": BINARY}}}
            implied |= {413, 415, 422}
        if declaration.form is not None:
            operation["requestBody"] = {"required": True, "content": {
                "multipart/form-data": {"schema": _form_schema(resolved(schema(declaration.form, "validation")),
                                                               declaration.files)}}}
            implied |= {413, 415, 422}
        responses: dict[str, Any] = {str(status): error(IMPLIED[status]) for status in implied}
        for status, answer in declaration.responses.items():
            if isinstance(answer, str):
                responses[str(status)] = error(answer)
            elif answer is None:
                responses[str(status)] = {"description": "No content."}
            else:
                media = answer if isinstance(answer, Mapping) else {JSON: answer}
                content = {kind: {"schema": schema(model, "serialization")} for kind, model in media.items()}
                responses[str(status)] = {"description": "Success." if status < 300 else "See the body.",
                                          "content": content}
        operation["responses"] = dict(sorted(responses.items()))
        if not scope:
            operation["security"] = []
        paths.setdefault(_openapi_path(rule), {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _referenced(components, paths),
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"token": []}],
    }


def _references(value: Any) -> Iterator[str]:
    """The names of the components ``value`` refers to."""
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"].rsplit("/", 1)[1]
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _referenced(components: dict[str, Any], paths: dict[str, Any]) -> dict[str, Any]:
    """The components ``paths`` use, directly or through other components (query and form models are inlined)."""
    used: set[str] = set()
    todo = list(_references(paths))
    while todo:
        name = todo.pop()
        if name not in used:
            used.add(name)
            todo += _references(components[name])
    return {name: components[name] for name in sorted(used)}


def _declared(app: Flask) -> Iterator[tuple[Rule, str, Declaration, Any]]:
    """``(rule, method, declaration, view)`` of every declared route of ``app``."""
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        declaration = getattr(view, "declaration", None)
        if declaration is not None:
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                yield rule, method.lower(), declaration, view


def _response_types(declaration: Declaration) -> Iterator[Any]:
    for answer in declaration.responses.values():
        if answer is not None and not isinstance(answer, str):
            yield from (answer.values() if isinstance(answer, Mapping) else [answer])


def _name(kind: Any) -> str:
    return getattr(kind, "__name__", repr(kind))


def _openapi_path(rule: Rule) -> str:
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)


def _path_parameter(name: str, converter: BaseConverter) -> dict[str, Any]:
    schema = {"type": "string", "pattern": f"^{converter.regex}$"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _absent_not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query or form field's schema without pydantic's ``null`` branch: there, None means the field is absent."""
    variants = schema.get("anyOf")
    if not variants or {"type": "null"} not in variants:
        return schema
    rest = [variant for variant in variants if variant != {"type": "null"}]
    out = {key: value for key, value in schema.items() if key != "anyOf" and not (key == "default" and value is None)}
    return {**rest[0], **out} if len(rest) == 1 else {**out, "anyOf": rest}


def _query_parameters(model: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(model.get("required", ()))
    parameters = []
    for name, prop in model.get("properties", {}).items():
        prop = _absent_not_null(prop)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            parameter["description"] = prop["description"]
        if prop.get("type") == "array":
            parameter["style"], parameter["explode"] = "form", False  # a,b,c (declare.comma_list)
        parameters.append(parameter)
    return parameters


def _form_schema(model: dict[str, Any], files: tuple[str, ...]) -> dict[str, Any]:
    properties = {name: _absent_not_null(prop) for name, prop in model.get("properties", {}).items()}
    properties |= {name: BINARY for name in files}
    return {**model, "properties": properties, "required": sorted({*model.get("required", ()), *files})}


# --------------------------------------------------------------------------- routes


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return Response(orjson.dumps(document()), mimetype=JSON)


#: The script that starts Swagger UI (``GET /docs/docs.js``): a file, so ``/docs`` runs no inline script.
DOCS_SCRIPT = resources.files(__package__) / "docs.js"

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Trainyard API</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" type="image/svg+xml" href="{icon}">
</head>
<body>
<div id="swagger-ui" data-spec="{spec}"></div>
<script src="{bundle}"></script>
<script src="{script}"></script>
</body>
</html>
"""


@bp.get("/docs")
def docs() -> Response:
    """Swagger UI on this server's document: try every call with a token (the Authorize button).

    Its Content-Security-Policy (:data:`trainyard.service.headers.DOCS_POLICY`) lets it load from this server only.
    """
    static = functools.partial(url_for, "openapi.static")
    page = PAGE.format(css=static(filename="swagger-ui.css"), icon=url_for("dashboard.static", filename="favicon.svg"),
                       bundle=static(filename="swagger-ui-bundle.js"),
                       script=url_for("openapi.docs_script"), spec=escape(url_for("openapi.openapi_json")))
    return Response(page, mimetype="text/html")


@bp.get("/docs/docs.js")
def docs_script() -> Response:
    """The script of ``/docs`` that starts Swagger UI on this server's document (never persisting a token)."""
    return Response(DOCS_SCRIPT.read_bytes(), mimetype="text/javascript")
