"""The worklist over HTTP: search it, claim and release, assign, and the organisation's reading rules."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ValidationError

from radcommon.auth import principal_of, require_roles
from radcommon.contracts import RoleValues
from radcommon.db import Database
from radcommon.openapi import operation, parse_body, parse_query
from radcommon.problems import Conflict, NotFound, UnprocessableContent
from worklist import views
from worklist.config import WorklistSettings
from worklist.domain.model import WorklistError, WorklistItem
from worklist.domain.priority import PriorityRule
from worklist.domain.sla import SlaPolicy
from worklist.entrypoints.models import (
    AssignRequest,
    AvailabilityUpdate,
    ChangesPage,
    ChangesQuery,
    PriorityRequest,
    PriorityRules,
    PriorityRuleView,
    ReaderList,
    ReaderUpdate,
    ReaderView,
    SlaPolicies,
    SlaPolicyView,
    StatsQuery,
    WorklistCounts,
    WorklistItemView,
    WorklistPage,
    WorklistQuery,
)
from worklist.representation import item_document
from worklist.service_layer import commands
from worklist.service_layer.rules import default_sla_policies
from worklist.service_layer.unit_of_work import WorklistUnitOfWork

log = logging.getLogger(__name__)
database_key = web.AppKey("database", Database)
settings_key = web.AppKey("settings", WorklistSettings)

SEEING = (RoleValues.ADMIN, RoleValues.MANAGER, RoleValues.RADIOLOGIST, RoleValues.TECHNICIAN, RoleValues.VIEWER)
MANAGING = (RoleValues.ADMIN, RoleValues.MANAGER)
READING = (RoleValues.RADIOLOGIST,)


class ItemPath(BaseModel):
    item_id: UUID


class ReaderPath(BaseModel):
    user_id: UUID


def add_routes(app: web.Application, db: Database, settings: WorklistSettings) -> None:
    app[database_key] = db
    app[settings_key] = settings
    app.router.add_get("/worklist", list_worklist)
    app.router.add_get("/worklist/counts", count_worklist)
    app.router.add_get("/worklist/stats", worklist_stats)
    app.router.add_get("/worklist/changes", list_changes)
    app.router.add_get("/worklist/items/{item_id}", get_item)
    app.router.add_post("/worklist/items/{item_id}/claim", claim_item)
    app.router.add_post("/worklist/items/{item_id}/release", release_item)
    app.router.add_post("/worklist/items/{item_id}/assign", assign_item)
    app.router.add_put("/worklist/items/{item_id}/priority", change_priority)
    app.router.add_get("/worklist/sla-policies", get_sla_policies)
    app.router.add_put("/worklist/sla-policies", put_sla_policies)
    app.router.add_get("/worklist/priority-rules", get_priority_rules)
    app.router.add_put("/worklist/priority-rules", put_priority_rules)
    app.router.add_get("/worklist/readers", list_readers)
    app.router.add_patch("/worklist/readers/{user_id}", update_reader)
    app.router.add_put("/worklist/availability", set_availability)


def _uow(request: web.Request) -> WorklistUnitOfWork:
    return WorklistUnitOfWork(request.app[database_key], request.app[settings_key])


def _path(request: web.Request, model: type[ItemPath] | type[ReaderPath], what: str) -> UUID:
    try:
        return next(iter(model.model_validate(dict(request.match_info)).model_dump().values()))  # type: ignore[no-any-return]
    except ValidationError:
        raise NotFound(f"no such {what}") from None


async def _command(action: Callable[[], Awaitable[WorklistItem]]) -> web.Response:
    """Run a command on an item: unknown items are 404, what its state forbids is 409."""
    try:
        item = await action()
    except commands.ItemNotFound as error:
        raise NotFound(str(error)) from None
    except commands.UnknownReader as error:
        raise UnprocessableContent(str(error)) from None
    except WorklistError as error:
        raise Conflict(str(error)) from None
    return web.json_response(item_document(item))


@operation("The organisation's worklist: filter, sort and page", query=WorklistQuery,
           responses={200: WorklistPage, 403: None}, tags=["worklist"], security=True)
async def list_worklist(request: web.Request) -> web.Response:
    """``patient`` matches part of the name or the whole patient ID; ``assignee`` is a user id, ``me`` or
    ``none``; ``status`` and ``priority`` take several values (repeated or comma-separated)."""
    principal = require_roles(request, *SEEING)
    query = parse_query(request, WorklistQuery)
    async with request.app[database_key].session() as session:
        page = await views.worklist_page(session, principal.organization_id, query, principal.user_id)
    return web.json_response(page)


@operation("Counts for the dashboard: by status and priority, unassigned, mine, near and past deadline",
           responses={200: WorklistCounts, 403: None}, tags=["worklist"], security=True)
async def count_worklist(request: web.Request) -> web.Response:
    principal = require_roles(request, *SEEING)
    async with request.app[database_key].session() as session:
        counts = await views.worklist_counts(session, principal.organization_id, principal.user_id)
    return web.json_response(counts)


@operation("Turnaround (received to final, median and p90) and SLA compliance, per organisation, priority "
           "and radiologist", query=StatsQuery, responses={200: None, 403: None}, tags=["worklist"], security=True)
async def worklist_stats(request: web.Request) -> web.Response:
    principal = require_roles(request, *MANAGING)
    query = parse_query(request, StatsQuery)
    start = datetime.combine(query.finalized_from, time(), UTC) if query.finalized_from else None
    end = datetime.combine(query.finalized_to + timedelta(days=1), time(), UTC) if query.finalized_to else None
    async with request.app[database_key].session() as session:
        stats = await views.worklist_stats(session, principal.organization_id, start, end)
    return web.json_response(stats)


@operation("The organisation's changes after a sequence number, in order (to resume a live feed)",
           query=ChangesQuery, responses={200: ChangesPage, 403: None}, tags=["worklist"], security=True)
async def list_changes(request: web.Request) -> web.Response:
    principal = require_roles(request, *SEEING)
    query = parse_query(request, ChangesQuery)
    async with request.app[database_key].session() as session:
        page = await views.changes_after(session, principal.organization_id, query.after, query.limit)
    return web.json_response(page)


@operation("One worklist item", path=ItemPath, responses={200: WorklistItemView, 403: None, 404: None},
           tags=["worklist"], security=True)
async def get_item(request: web.Request) -> web.Response:
    principal = require_roles(request, *SEEING)
    item_id = _path(request, ItemPath, "worklist item")
    async with request.app[database_key].session() as session:
        item = await views.worklist_item(session, principal.organization_id, item_id)
    if item is None:
        raise NotFound("no such worklist item")
    return web.json_response(item)


@operation("Claim an item to read it (again, to renew the claim)", path=ItemPath,
           responses={200: WorklistItemView, 403: None, 404: None, 409: None}, tags=["worklist"], security=True)
async def claim_item(request: web.Request) -> web.Response:
    """One radiologist at a time: a second claim while the first holds is 409. A claim lapses after the
    configured time unless renewed (or a draft is saved); the item then returns to the queue."""
    principal = require_roles(request, *READING)
    item_id = _path(request, ItemPath, "worklist item")
    return await _command(lambda: commands.claim_item(_uow(request), principal.organization_id, item_id,
                                                      principal.user_id))


@operation("Release a claimed item back to the queue", path=ItemPath,
           responses={200: WorklistItemView, 403: None, 404: None, 409: None}, tags=["worklist"], security=True)
async def release_item(request: web.Request) -> web.Response:
    principal = require_roles(request, *READING, *MANAGING)
    item_id = _path(request, ItemPath, "worklist item")
    on_behalf = principal.has_any(*MANAGING)
    return await _command(lambda: commands.release_item(_uow(request), principal.organization_id, item_id,
                                                        principal.user_id, on_behalf=on_behalf))


@operation("Assign or reassign an item to a radiologist", path=ItemPath, request=AssignRequest,
           responses={200: WorklistItemView, 403: None, 404: None, 409: None, 422: None},
           tags=["worklist"], security=True)
async def assign_item(request: web.Request) -> web.Response:
    principal = require_roles(request, *MANAGING)
    item_id = _path(request, ItemPath, "worklist item")
    body = await parse_body(request, AssignRequest)
    return await _command(lambda: commands.assign_item(_uow(request), principal.organization_id, item_id,
                                                       body.assignee_id, principal.user_id))


@operation("Change an item's priority (its deadline follows the organisation's policy)", path=ItemPath,
           request=PriorityRequest, responses={200: WorklistItemView, 403: None, 404: None, 409: None},
           tags=["worklist"], security=True)
async def change_priority(request: web.Request) -> web.Response:
    principal = require_roles(request, *MANAGING)
    item_id = _path(request, ItemPath, "worklist item")
    body = await parse_body(request, PriorityRequest)
    return await _command(lambda: commands.change_priority(_uow(request), principal.organization_id, item_id,
                                                           body.priority))


def _policies_document(policies: list[SlaPolicy], settings: WorklistSettings) -> dict[str, Any]:
    def view(p: SlaPolicy) -> dict[str, Any]:
        return SlaPolicyView(priority=p.priority, modality=p.modality, minutes=p.minutes,
                             warning_fraction=p.warning_fraction).model_dump(mode="json")
    return {"policies": [view(p) for p in policies], "defaults": [view(p) for p in default_sla_policies(settings)]}


@operation("The organisation's SLA policies (per priority and modality; * is any modality)",
           responses={200: SlaPolicies, 403: None}, tags=["worklist settings"], security=True)
async def get_sla_policies(request: web.Request) -> web.Response:
    principal = require_roles(request, *MANAGING)
    async with _uow(request) as uow:
        policies = await uow.policies.sla_policies(principal.organization_id)
    return web.json_response(_policies_document(policies, request.app[settings_key]))


@operation("Replace the organisation's SLA policies", request=SlaPolicies,
           responses={200: SlaPolicies, 403: None, 422: None}, tags=["worklist settings"], security=True)
async def put_sla_policies(request: web.Request) -> web.Response:
    """New policies apply to studies that arrive from now on; deadlines already set stay as they are.
    ``defaults`` in the body is ignored (it comes from the service's configuration)."""
    principal = require_roles(request, *MANAGING)
    body = await parse_body(request, SlaPolicies)
    try:
        policies = [SlaPolicy(p.priority, p.modality, p.minutes, p.warning_fraction) for p in body.policies]
        await commands.replace_sla_policies(_uow(request), principal.organization_id, policies)
    except ValueError as error:
        raise UnprocessableContent(str(error)) from None
    log.info("SLA policies replaced", extra={"organization_id": str(principal.organization_id),
                                             "user_id": str(principal.user_id), "policies": len(policies)})
    return web.json_response(_policies_document(policies, request.app[settings_key]))


@operation("The organisation's priority rules (they raise a study's priority, never lower it)",
           responses={200: PriorityRules, 403: None}, tags=["worklist settings"], security=True)
async def get_priority_rules(request: web.Request) -> web.Response:
    principal = require_roles(request, *MANAGING)
    async with _uow(request) as uow:
        rules = await uow.policies.priority_rules(principal.organization_id)
    return web.json_response({"rules": [PriorityRuleView(**vars(r)).model_dump(mode="json") for r in rules]})


@operation("Replace the organisation's priority rules", request=PriorityRules,
           responses={200: PriorityRules, 403: None, 422: None}, tags=["worklist settings"], security=True)
async def put_priority_rules(request: web.Request) -> web.Response:
    principal = require_roles(request, *MANAGING)
    body = await parse_body(request, PriorityRules)
    try:
        rules = [PriorityRule(**r.model_dump()) for r in body.rules]
    except ValueError as error:
        raise UnprocessableContent(str(error)) from None
    await commands.replace_priority_rules(_uow(request), principal.organization_id, rules)
    return web.json_response({"rules": [r.model_dump(mode="json") for r in body.rules]})


@operation("The radiologists reading for the organisation, their competences, availability and open load",
           responses={200: ReaderList, 403: None}, tags=["worklist settings"], security=True)
async def list_readers(request: web.Request) -> web.Response:
    principal = require_roles(request, *MANAGING)
    async with request.app[database_key].session() as session:
        found = await views.readers(session, principal.organization_id)
    return web.json_response(found)


@operation("Change a radiologist's competences (modalities, body parts), availability or open-item cap",
           path=ReaderPath, request=ReaderUpdate, responses={200: ReaderView, 403: None, 404: None},
           tags=["worklist settings"], security=True)
async def update_reader(request: web.Request) -> web.Response:
    principal = require_roles(request, *MANAGING)
    user_id = _path(request, ReaderPath, "radiologist")
    body = await parse_body(request, ReaderUpdate)
    return await _reader_changed(request, principal.organization_id, user_id,
                                 body.model_dump(exclude_unset=True))


@operation("Say whether you are available for new assignments", request=AvailabilityUpdate,
           responses={200: ReaderView, 403: None, 404: None}, tags=["worklist"], security=True)
async def set_availability(request: web.Request) -> web.Response:
    principal = require_roles(request, *READING)
    body = await parse_body(request, AvailabilityUpdate)
    return await _reader_changed(request, principal.organization_id, principal.user_id,
                                 {"available": body.available})


async def _reader_changed(request: web.Request, organization_id: UUID, user_id: UUID,
                          changes: dict[str, Any]) -> web.Response:
    try:
        reader = await commands.update_reader(_uow(request), organization_id, user_id, changes)
    except commands.UnknownReader as error:
        raise NotFound(str(error)) from None
    log.info("reader changed", extra={"organization_id": str(organization_id), "reader_id": str(user_id),
                                      "by": str(principal_of(request).user_id), "fields": sorted(changes)})
    return web.json_response(ReaderView(user_id=reader.user_id, display_name=reader.display_name,
                                        modalities=reader.modalities, body_parts=reader.body_parts,
                                        available=reader.available, active=reader.active,
                                        max_open=reader.max_open).model_dump(mode="json"))
