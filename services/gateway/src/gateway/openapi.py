"""The public API document: the services' own OpenAPI documents, mapped onto the gateway's routes.

Each service generates its document from its models; the gateway takes, for every route it proxies,
the upstream operation and publishes it under the public path, adding what the gateway itself may
answer (401, 403, 429, 502, 503). Nothing here is written by hand.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from radcommon.openapi import BEARER_SCHEME, JSON_SCHEMA_DIALECT, OPENAPI_VERSION, PROBLEM_SCHEMA

PROXY_ATTRIBUTE = "__telerad_proxy__"
_PARAMETER = re.compile(r"\{([^{}:]+)(?::[^{}]*)?\}")
_GATEWAY_ERRORS = {
    "401": "Unauthorized: no token, or a token that is invalid, expired or revoked",
    "403": "Forbidden: the token's role may not do this",
    "429": "Too Many Requests: slow down (see Retry-After)",
    "502": "Bad Gateway: the service failed",
    "503": "Service Unavailable: the service is not answering",
}
Fetch = Callable[[str], Awaitable[dict[str, Any]]]


def mark_proxy(handler: Any, service: str, upstream_path: str | None) -> None:
    setattr(handler, PROXY_ATTRIBUTE, (service, upstream_path))


def public_document(app: web.Application, upstream_documents: Mapping[str, dict[str, Any]], *,
                    public_routes: set[tuple[str, str]], title: str = "Telerad API",
                    version: str = "0.1.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for route in app.router.routes():
        target = getattr(route.handler, PROXY_ATTRIBUTE, None)
        resource = route.resource
        if target is None or resource is None or route.method == "HEAD":
            continue
        service, upstream_path = target
        document = upstream_documents.get(service)
        public_path = _PARAMETER.sub(r"{\1}", resource.canonical)
        upstream = _PARAMETER.sub(r"{\1}", upstream_path or resource.canonical)
        operation = (document or {}).get("paths", {}).get(upstream, {}).get(route.method.lower())
        if document is None or operation is None:
            continue
        renames = _merge_schemas(service, document.get("components", {}).get("schemas", {}), schemas, owners)
        operation = _renamed(copy.deepcopy(operation), renames)
        _rename_path_parameters(operation, _PARAMETER.findall(upstream), _PARAMETER.findall(public_path))
        operation["operationId"] = f"{service.replace('-', '_')}_{operation.get('operationId', route.method)}"
        protected = (route.method, resource.canonical) not in public_routes
        for status, description in _GATEWAY_ERRORS.items():
            if status in ("401", "403") and not protected:
                continue
            operation.setdefault("responses", {}).setdefault(status, {
                "description": description,
                "content": {"application/problem+json": {"schema": {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}}},
            })
        if protected:
            operation["security"] = [{BEARER_SCHEME: []}]
        paths.setdefault(public_path, {})[route.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": JSON_SCHEMA_DIALECT,
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": {
            BEARER_SCHEME: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }


def _merge_schemas(service: str, theirs: Mapping[str, Any], ours: dict[str, Any], owners: dict[str, str]
                   ) -> dict[str, str]:
    """Add a service's schemas; a name another service already uses differently gets the service's prefix."""
    renames: dict[str, str] = {}
    for name, schema in theirs.items():
        if name in ours and json.dumps(ours[name], sort_keys=True) != json.dumps(schema, sort_keys=True):
            renames[name] = f"{service.replace('-', '_')}_{name}"
    for name, schema in theirs.items():
        final = renames.get(name, name)
        if final not in ours:
            ours[final] = _renamed(copy.deepcopy(schema), renames)
            owners[final] = service
    return renames


def _renamed(node: Any, renames: Mapping[str, str]) -> Any:
    if not renames:
        return node
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            node["$ref"] = f"#/components/schemas/{renames.get(name, name)}"
        for value in node.values():
            _renamed(value, renames)
    elif isinstance(node, list):
        for item in node:
            _renamed(item, renames)
    return node


def _rename_path_parameters(operation: dict[str, Any], upstream: list[str], public: list[str]) -> None:
    mapping = dict(zip(upstream, public, strict=False))
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path" and parameter.get("name") in mapping:
            parameter["name"] = mapping[parameter["name"]]


def add_public_document_route(app: web.Application, upstreams: dict[str, str], *,
                              public_routes: set[tuple[str, str]], client: Callable[[], aiohttp.ClientSession],
                              cache_seconds: float = 60) -> None:
    """Serve ``GET /openapi.json``: fetched from the services, mapped, cached for a minute."""
    cached: dict[str, Any] = {}

    async def openapi_json(_: web.Request) -> web.Response:
        if not cached or time.monotonic() - cached["at"] > cache_seconds:
            documents = {}
            for name, url in upstreams.items():
                try:
                    async with client().get(f"{url.rstrip('/')}/openapi.json") as response:
                        if response.status == 200:
                            documents[name] = await response.json()
                except (aiohttp.ClientError, TimeoutError):
                    continue
            if not documents and cached:
                return web.Response(text=cached["text"], content_type="application/json")
            text = json.dumps(public_document(app, documents, public_routes=public_routes))
            if len(documents) == len(upstreams):  # a partial document is served, not kept
                cached.update(at=time.monotonic(), text=text)
            return web.Response(text=text, content_type="application/json")
        return web.Response(text=cached["text"], content_type="application/json")

    app.router.add_get("/openapi.json", openapi_json)
