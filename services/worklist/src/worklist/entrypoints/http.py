from __future__ import annotations

from aiohttp import web

from radcommon.auth import organization_of
from radcommon.db import Database
from radcommon.openapi import operation, parse_query
from worklist import views
from worklist.entrypoints.models import WorklistPage, WorklistQuery

database_key = web.AppKey("database", Database)


def add_routes(app: web.Application, db: Database) -> None:
    app[database_key] = db
    app.router.add_get("/worklist", list_worklist)


@operation("The organisation's worklist, newest first", query=WorklistQuery, responses={200: WorklistPage},
           tags=["worklist"], security=True)
async def list_worklist(request: web.Request) -> web.Response:
    query = parse_query(request, WorklistQuery)
    async with request.app[database_key].session() as session:
        page = await views.worklist_page(session, organization_of(request), query.limit, query.offset)
    return web.json_response(page)
