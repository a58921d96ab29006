"""A service's OpenAPI 3.1 document, generated from the pydantic models its routes declare.

A route handler is described with :func:`operation`; :func:`openapi_document` walks the app's router
and builds the document (OpenAPI 3.1.0, schemas in the JSON Schema 2020-12 dialect pydantic emits);
:func:`add_openapi_route` serves it at ``GET /openapi.json``. :func:`parse_body` and
:func:`parse_query` enforce the same models at run time, answering RFC 9457 problem documents.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from inspect import getdoc
from types import UnionType
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import JsonSchemaMode

from radcommon.problems import PROBLEM_JSON, BadRequest, UnprocessableContent

OPENAPI_VERSION = "3.1.0"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_REF = "#/components/schemas/{model}"
PROBLEM_SCHEMA = "Problem"
FIELD_ERROR_SCHEMA = "ProblemFieldError"
BEARER_SCHEME = "bearerAuth"
MAX_REPORTED_ERRORS = 50

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[web.StreamResponse]])
ModelT = TypeVar("ModelT", bound=BaseModel)
_ATTRIBUTE = "__openapi_operation__"
_PATH_PARAMETER = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True)
class Operation:
    """What :func:`operation` stores on a handler."""

    summary: str
    description: str | None = None
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path: type[BaseModel] | None = None
    responses: Mapping[int, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    security: bool = False
    operation_id: str | None = None


def operation(summary: str, *, request: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
              path: type[BaseModel] | None = None, responses: Mapping[int, Any] | None = None,
              tags: Sequence[str] = (), security: bool = False, description: str | None = None,
              operation_id: str | None = None) -> Callable[[Handler], Handler]:
    """Describe a route handler for the OpenAPI document.

    ``request`` is the JSON body's model, ``query`` the query string's, ``path`` (optional) types the
    path parameters (untyped ones are strings). ``responses`` maps a status to the body's type (a
    model, ``list[Model]``, ...) or ``None`` for no body; an error status (>= 400) always answers an
    RFC 9457 problem document, so it must map to ``None``. The errors :func:`parse_body` (400, 422),
    :func:`parse_query` (422) and bearer authentication (401, with ``security=True``) answer are
    documented without being listed. The description defaults to the handler's docstring.
    """
    documented = dict(responses or {})
    for status, body in documented.items():
        if not 100 <= status <= 599:
            raise ValueError(f"{status} is not an HTTP status")
        if status >= 400 and body is not None:
            raise ValueError(f"error response {status} is a problem document: map it to None")
    if not summary:
        raise ValueError("an operation needs a summary")

    def describe(handler: Handler) -> Handler:
        setattr(handler, _ATTRIBUTE, Operation(
            summary=summary, description=description or getdoc(handler), request=request, query=query,
            path=path, responses=documented, tags=tuple(tags), security=security, operation_id=operation_id))
        return handler

    return describe


def described(handler: Callable[..., Any]) -> Operation | None:
    found = getattr(handler, _ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None


def openapi_document(app: web.Application, *, title: str, version: str,
                     servers: Sequence[str] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the app's described routes (undescribed ones are left out).

    Schemas come from pydantic (request, query and path models in validation mode, response types
    in serialization mode) in one pass, so a model used twice is one entry of
    ``components/schemas``; error responses refer to the one ``Problem`` schema (RFC 9457).
    """
    routes = [(route, op) for route in app.router.routes() if (op := _documented(route)) is not None]
    keys: list[tuple[tuple[str, int, Any], Any]] = []
    for index, (_, op) in enumerate(routes):
        keys += [(("request", index, None), op.request), (("query", index, None), op.query),
                 (("path", index, None), op.path)]
        keys += [(("response", index, status), body) for status, body in op.responses.items()]
    schemas, definitions = _schemas(keys)

    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    uses_security = False
    for index, (route, op) in enumerate(routes):
        path = route.resource.canonical if route.resource else ""
        name = _unique(op.operation_id or str(getattr(route.handler, "__name__", "operation")), operation_ids)
        item = _operation(op, name, path, index, schemas, definitions)
        paths.setdefault(path, {})[route.method.lower()] = item
        uses_security = uses_security or op.security

    definitions = _without_parameter_models(definitions, paths, [
        schema for (kind, _, _), schema in schemas.items() if kind in ("query", "path")])
    clashing = {PROBLEM_SCHEMA, FIELD_ERROR_SCHEMA} & definitions.keys()
    if clashing:
        raise ValueError(f"a model is named like the problem schema: {sorted(clashing)}")
    components: dict[str, Any] = {"schemas": {**definitions, **_problem_schemas()}}
    if uses_security:
        components["securitySchemes"] = {BEARER_SCHEME: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    document: dict[str, Any] = {"openapi": OPENAPI_VERSION, "jsonSchemaDialect": JSON_SCHEMA_DIALECT,
                                "info": {"title": title, "version": version}}
    if servers:
        document["servers"] = [{"url": url} for url in servers]
    document["paths"] = paths
    document["components"] = components
    return document


def add_openapi_route(app: web.Application, *, title: str, version: str, servers: Sequence[str] | None = None,
                      path: str = "/openapi.json") -> None:
    """Serve the app's document at ``GET path``, built on the first request (every route is there
    by then) and kept."""
    built: list[str] = []

    @operation("This service's OpenAPI document", responses={200: dict[str, Any]}, tags=["meta"])
    async def openapi_json(_: web.Request) -> web.Response:
        if not built:
            built.append(json.dumps(openapi_document(app, title=title, version=version, servers=servers)))
        return web.Response(text=built[0], content_type="application/json")

    app.router.add_get(path, openapi_json)


async def parse_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """The JSON body as ``model``: malformed JSON is a 400, a body of the wrong shape a 422, each a
    problem document (RFC 9457) whose ``errors`` extension lists ``{loc, msg}``."""
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as error:
        errors = _errors("body", error)
        if any(e["type"] == "json_invalid" for e in error.errors(include_url=False)):
            raise BadRequest("the request body is not valid JSON", errors=errors) from None
        raise UnprocessableContent("the request body does not match its schema", errors=errors) from None


def parse_query(request: web.Request, model: type[ModelT]) -> ModelT:
    """The query string as ``model`` (a list field takes every value of a repeated key, any other
    field the first); a mismatch is a 422 problem document with an ``errors`` extension."""
    many = _list_fields(model)
    values = {key: request.query.getall(key) if key in many else request.query[key] for key in request.query}
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise UnprocessableContent("the query string does not match its schema",
                                   errors=_errors("query", error)) from None


def _documented(route: web.AbstractRoute) -> Operation | None:
    op = described(route.handler)
    if op is None or route.method == "*":
        return None
    if route.method == "HEAD" and route.resource is not None and any(
            other.method == "GET" and other.handler is route.handler for other in route.resource):
        return None             # add_get's implicit HEAD twin
    return op


def _schemas(keys: Iterable[tuple[tuple[str, int, Any], Any]]
             ) -> tuple[dict[tuple[str, int, Any], dict[str, Any]], dict[str, Any]]:
    inputs: list[tuple[tuple[str, int, Any], JsonSchemaMode, TypeAdapter[Any]]] = [
        (key, "serialization" if key[0] == "response" else "validation", TypeAdapter(body))
        for key, body in keys if body is not None]
    if not inputs:
        return {}, {}
    by_key, top = TypeAdapter.json_schemas(inputs, ref_template=SCHEMA_REF)
    return {key: schema for (key, _), schema in by_key.items()}, dict(top.get("$defs", {}))


def _operation(op: Operation, name: str, path: str, index: int,
               schemas: Mapping[tuple[str, int, Any], dict[str, Any]], definitions: Mapping[str, Any]
               ) -> dict[str, Any]:
    item: dict[str, Any] = {"operationId": name, "summary": op.summary}
    if op.description:
        item["description"] = op.description
    if op.tags:
        item["tags"] = list(op.tags)
    parameters = _path_parameters(path, schemas.get(("path", index, None)), definitions)
    if op.query is not None:
        parameters += _parameters("query", schemas[("query", index, None)], definitions)
    if parameters:
        item["parameters"] = parameters
    if op.request is not None:
        item["requestBody"] = {"required": True,
                               "content": {"application/json": {"schema": schemas[("request", index, None)]}}}

    responses: dict[str, Any] = {}
    for status, body in sorted(op.responses.items()):
        response: dict[str, Any] = {"description": _phrase(status)}
        if status >= 400:
            response["content"] = {PROBLEM_JSON: {"schema": {"$ref": SCHEMA_REF.format(model=PROBLEM_SCHEMA)}}}
        elif body is not None:
            response["content"] = {"application/json": {"schema": schemas[("response", index, status)]}}
        responses[str(status)] = response
    implied = ([400, 422] if op.request else []) + ([422] if op.query or op.path else []) + \
        ([401] if op.security else [])
    for status in sorted(set(implied) - op.responses.keys()):
        responses[str(status)] = {"description": _phrase(status), "content": {
            PROBLEM_JSON: {"schema": {"$ref": SCHEMA_REF.format(model=PROBLEM_SCHEMA)}}}}
    item["responses"] = dict(sorted(responses.items())) or {"default": {"description": "Any response"}}
    if op.security:
        item["security"] = [{BEARER_SCHEME: []}]
    return item


def _path_parameters(path: str, model_schema: dict[str, Any] | None, definitions: Mapping[str, Any]
                     ) -> list[dict[str, Any]]:
    names = _PATH_PARAMETER.findall(path)
    typed = {p["name"]: p for p in _parameters("path", model_schema, definitions)} if model_schema else {}
    if unknown := typed.keys() - set(names):
        raise ValueError(f"{path} has no path parameter {sorted(unknown)}")
    return [typed.get(name) or {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names]


def _parameters(location: str, model_schema: dict[str, Any], definitions: Mapping[str, Any]
                ) -> list[dict[str, Any]]:
    resolved = _resolve(model_schema, definitions)
    required = set(resolved.get("required", ()))
    parameters = []
    for name, schema in resolved.get("properties", {}).items():
        parameter: dict[str, Any] = {"name": name, "in": location, "required": location == "path" or name in required}
        if "description" in schema:
            parameter["description"] = schema["description"]
        parameter["schema"] = schema if parameter["required"] else _without_null(schema)
        parameters.append(parameter)
    return parameters


def _resolve(schema: dict[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    prefix = SCHEMA_REF.format(model="")
    return dict(definitions[ref.removeprefix(prefix)]) if ref.startswith(prefix) else schema


def _without_parameter_models(definitions: dict[str, Any], paths: Mapping[str, Any],
                              parameter_models: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Query and path models are spread into parameters; their own schemas stay only if referred to."""
    prefix = SCHEMA_REF.format(model="")
    spread = {s["$ref"].removeprefix(prefix) for s in parameter_models if "$ref" in s}
    used = set(_refs(paths)) | {ref for name, schema in definitions.items() if name not in spread
                                for ref in _refs(schema)}
    return {name: schema for name, schema in definitions.items() if name not in spread or prefix + name in used}


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An absent query parameter is how ``None`` is said, so ``X | None`` is documented as ``X``."""
    branches = [b for b in schema.get("anyOf", ()) if b != {"type": "null"}]
    if "anyOf" not in schema or len(branches) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**branches[0], **rest}


def _problem_schemas() -> dict[str, Any]:
    return {
        PROBLEM_SCHEMA: {
            "type": "object",
            "description": "Problem Details for HTTP APIs (RFC 9457).",
            "properties": {
                "type": {"type": "string", "format": "uri-reference", "default": "about:blank"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 100, "maximum": 599},
                "detail": {"type": "string"},
                "instance": {"type": "string", "format": "uri-reference"},
                "errors": {"type": "array", "items": {"$ref": SCHEMA_REF.format(model=FIELD_ERROR_SCHEMA)}},
            },
            "required": ["type", "title", "status"],
        },
        FIELD_ERROR_SCHEMA: {
            "type": "object",
            "description": "Where a request departs from its schema: the location ('body', 'query', then the "
                           "field path) and what is wrong.",
            "properties": {"loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                           "msg": {"type": "string"}},
            "required": ["loc", "msg"],
        },
    }


def _errors(location: str, error: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": [location, *e["loc"]], "msg": e["msg"]}
            for e in error.errors(include_url=False, include_input=False)[:MAX_REPORTED_ERRORS]]


def _list_fields(model: type[BaseModel]) -> set[str]:
    many = set()
    for name, info in model.model_fields.items():
        if _is_list(info.annotation):
            many |= {name, info.alias or name}
            if isinstance(info.validation_alias, str):
                many.add(info.validation_alias)
    return many


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is UnionType:
        return any(_is_list(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    if origin is typing.Annotated:
        return _is_list(typing.get_args(annotation)[0])
    return origin in (list, tuple, set, frozenset, Sequence)


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _phrase(status: int) -> str:
    if status == 422:
        return "Unprocessable Content"     # RFC 9110's name; Python before 3.13 has the older one
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Status {status}"
