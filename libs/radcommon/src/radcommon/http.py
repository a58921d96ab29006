"""The aiohttp app factory every service starts from.

Gives each app ``/healthz`` (the process answers), ``/readyz`` (its database and bus answer),
``/metrics`` (Prometheus), ``/openapi.json`` (its OpenAPI document, :mod:`radcommon.openapi`), a
request id on every request and response, one JSON access-log line a request, a server span carrying
the caller's trace context, and every error as problem+json.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from radcommon.logging import request_id_var
from radcommon.openapi import add_openapi_route
from radcommon.problems import PROBLEM_JSON, problem_document
from radcommon.telemetry import extract_context, tracer

log = logging.getLogger("radcommon.http")

REQUESTS = Counter("telerad_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram("telerad_http_request_seconds", "HTTP request latency", ["service", "method", "route"])

ReadinessCheck = Callable[[], Awaitable[bool]]
service_name_key = web.AppKey("service_name", str)
readiness_key = web.AppKey("readiness_checks", dict[str, ReadinessCheck])
REQUEST_ID_HEADER = "X-Request-ID"


def create_app(service: str, readiness: Mapping[str, ReadinessCheck] | None = None,
               client_max_size: int = 1024**2, version: str = "0.1.0", openapi: bool = True) -> web.Application:
    """``openapi=False`` for an app that serves a document of its own making (the gateway's)."""
    app = web.Application(middlewares=[_observe, _problems], client_max_size=client_max_size)
    app[service_name_key] = service
    app[readiness_key] = dict(readiness or {})
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    if openapi:
        add_openapi_route(app, title=service, version=version)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": request.app[service_name_key]})


async def _readyz(request: web.Request) -> web.Response:
    results = {}
    for name, check in request.app[readiness_key].items():
        try:
            results[name] = bool(await check())
        except Exception:
            results[name] = False
    ready = all(results.values())
    return web.json_response({"status": "ready" if ready else "unavailable", "checks": results},
                             status=200 if ready else 503)


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def _observe(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    service = request.app[service_name_key]
    request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
    if len(request_id) > 128 or not request_id.isprintable():
        request_id = uuid.uuid4().hex
    token = request_id_var.set(request_id)
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    started = time.perf_counter()
    status = 500
    with tracer(__name__).start_as_current_span(
        f"{request.method} {route}", context=extract_context(request.headers), kind=trace.SpanKind.SERVER,
    ) as span:
        try:
            response = await handler(request)
            status = response.status
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        except web.HTTPException as error:
            status = error.status
            error.headers[REQUEST_ID_HEADER] = request_id
            raise
        finally:
            elapsed = time.perf_counter() - started
            span.set_attribute("http.response.status_code", status)
            if route not in ("/healthz", "/readyz", "/metrics"):
                log.info("%s %s %s", request.method, request.path, status,
                         extra={"method": request.method, "path": request.path, "status": status,
                                "duration_ms": round(elapsed * 1000, 2), "remote": request.remote})
            REQUESTS.labels(service, request.method, route, str(status)).inc()
            LATENCY.labels(service, request.method, route).observe(elapsed)
            request_id_var.reset(token)


@web.middleware
async def _problems(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
    """Every error leaves as problem+json; an unexpected one is logged and its details kept inside."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        if error.content_type == PROBLEM_JSON:
            body = error.text or ""
        else:
            detail = error.text if error.text and error.text != f"{error.status}: {error.reason}" else None
            body = json.dumps(problem_document(error.status, error.reason, detail))
        headers = {k: v for k, v in error.headers.items() if k.lower() not in ("content-type", "content-length")}
        return web.Response(status=error.status, text=body, content_type=PROBLEM_JSON, headers=headers)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        body = json.dumps(problem_document(500, "Internal Server Error", "The server could not complete the request."))
        return web.Response(status=500, text=body, content_type=PROBLEM_JSON)
