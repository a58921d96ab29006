from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import aiohttp
from aiohttp import web

from radcommon.logging import request_id_var
from radcommon.problems import BadGateway, ServiceUnavailable
from radcommon.telemetry import current_traceparent

client_key = web.AppKey("client", aiohttp.ClientSession)
upstreams_key = web.AppKey("upstreams", dict[str, str])
organization_key = web.AppKey("organization", UUID)
FORWARDED_QUERY = ("limit", "offset")


def add_routes(app: web.Application, *, worklist_url: str, organization_id: UUID, timeout: float) -> None:
    app[upstreams_key] = {"worklist": worklist_url.rstrip("/")}
    app[organization_key] = organization_id
    app.router.add_get("/api/worklist", get_worklist)

    async def client(app: web.Application) -> AsyncIterator[None]:
        app[client_key] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        yield
        await app[client_key].close()

    app.cleanup_ctx.append(client)


async def get_worklist(request: web.Request) -> web.Response:
    query = {k: v for k, v in request.query.items() if k in FORWARDED_QUERY}
    return await _proxy(request, "worklist", "/worklist", query)


async def _proxy(request: web.Request, service: str, path: str, query: dict[str, str]) -> web.Response:
    headers = {"X-Organization-Id": str(request.app[organization_key]), "Accept": "application/json"}
    if request_id := request_id_var.get():
        headers["X-Request-ID"] = request_id
    if traceparent := current_traceparent():
        headers["traceparent"] = traceparent
    url = request.app[upstreams_key][service] + path
    try:
        async with request.app[client_key].get(url, params=query, headers=headers) as upstream:
            body = await upstream.read()
            content_type = upstream.headers.get("Content-Type", "application/json")
            status = upstream.status
    except (aiohttp.ClientConnectionError, TimeoutError) as error:
        raise ServiceUnavailable(f"{service} is not answering") from error
    except aiohttp.ClientError as error:
        raise BadGateway(f"{service} answered with an error") from error
    if status >= 500:
        raise BadGateway(f"{service} failed with status {status}")
    return web.Response(body=body, status=status, headers={"Content-Type": content_type})
