from __future__ import annotations

from aiohttp import web

from radcommon.auth import organization_of
from radcommon.db import Database
from radcommon.problems import BadRequest
from worklist import views

database_key = web.AppKey("database", Database)


def add_routes(app: web.Application, db: Database) -> None:
    app[database_key] = db
    app.router.add_get("/worklist", list_worklist)


async def list_worklist(request: web.Request) -> web.Response:
    organization_id = organization_of(request)
    limit = _int_param(request, "limit", default=50, low=1, high=500)
    offset = _int_param(request, "offset", default=0, low=0, high=10**9)
    async with request.app[database_key].session() as session:
        page = await views.worklist_page(session, organization_id, limit, offset)
    return web.json_response(page)


def _int_param(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value
