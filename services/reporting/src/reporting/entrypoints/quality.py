"""Disputes of final reports and peer review (RADPEER) over HTTP."""

from __future__ import annotations

from aiohttp import web

from radcommon.auth import require_roles
from radcommon.contracts import RoleValues
from radcommon.openapi import operation, parse_body, parse_query
from radcommon.problems import NotFound
from reporting import views
from reporting.entrypoints.common import (
    AUTHORING,
    MANAGING,
    READING,
    SEEING,
    DisputePath,
    ReportPath,
    database_key,
    day_range,
    path,
    run,
    uow,
)
from reporting.entrypoints.models import (
    DisputeList,
    DisputeRequest,
    DisputeResolution,
    DisputeResponseRequest,
    DisputeView,
    PeerReviewRequest,
    PeerReviewStats,
    PeerReviewView,
    StatsQuery,
)
from reporting.representation import dispute_view, json_of, review_view
from reporting.service_layer import quality

TAGS = ["quality"]
#: The referring physician's stand-in (a viewer) and managers dispute; managers decide.
DISPUTING = (RoleValues.VIEWER, RoleValues.MANAGER)
DECIDING = (RoleValues.MANAGER,)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/reports/{report_id}/disputes", raise_dispute)
    app.router.add_get("/reports/{report_id}/disputes", list_disputes)
    app.router.add_post("/disputes/{dispute_id}/response", respond_to_dispute)
    app.router.add_post("/disputes/{dispute_id}/resolve", resolve_dispute)
    app.router.add_post("/reports/{report_id}/peer-reviews", review_report)
    app.router.add_get("/peer-reviews/stats", peer_review_stats)


@operation("Dispute a final report", path=ReportPath, request=DisputeRequest,
           responses={201: DisputeView, 403: None, 404: None, 409: None}, tags=TAGS, security=True)
async def raise_dispute(request: web.Request) -> web.Response:
    """By a viewer (standing in for the referring physician) or a manager; the report's author responds and a
    manager resolves it."""
    principal = require_roles(request, *DISPUTING)
    report_id = path(request, ReportPath, "report").report_id
    body = await parse_body(request, DisputeRequest)
    dispute = await run(lambda: quality.raise_dispute(uow(request), principal.organization_id, report_id,
                                                      principal.user_id, body.reason))
    return web.json_response(json_of(dispute_view(dispute)), status=201)


@operation("A report's disputes", path=ReportPath, responses={200: DisputeList, 403: None, 404: None},
           tags=TAGS, security=True)
async def list_disputes(request: web.Request) -> web.Response:
    principal = require_roles(request, *SEEING)
    report_id = path(request, ReportPath, "report").report_id
    async with request.app[database_key].session() as session:
        found = await views.disputes(session, principal.organization_id, report_id,
                                     drafts_visible=principal.has_any(*AUTHORING))
    if found is None:
        raise NotFound("no such report")
    return web.json_response(found)


@operation("The author's response to a dispute", path=DisputePath, request=DisputeResponseRequest,
           responses={200: DisputeView, 403: None, 404: None, 409: None}, tags=TAGS, security=True)
async def respond_to_dispute(request: web.Request) -> web.Response:
    principal = require_roles(request, *READING)
    dispute_id = path(request, DisputePath, "dispute").dispute_id
    body = await parse_body(request, DisputeResponseRequest)
    dispute = await run(lambda: quality.respond_to_dispute(uow(request), principal.organization_id, dispute_id,
                                                           principal.user_id, body.text))
    return web.json_response(json_of(dispute_view(dispute)))


@operation("A manager's decision: resolved (corrected or withdrawn) or upheld (the report stands)",
           path=DisputePath, request=DisputeResolution, responses={200: DisputeView, 403: None, 404: None, 409: None},
           tags=TAGS, security=True)
async def resolve_dispute(request: web.Request) -> web.Response:
    principal = require_roles(request, *DECIDING)
    dispute_id = path(request, DisputePath, "dispute").dispute_id
    body = await parse_body(request, DisputeResolution)
    dispute = await run(lambda: quality.resolve_dispute(uow(request), principal.organization_id, dispute_id,
                                                        principal.user_id, body.outcome, body.note))
    return web.json_response(json_of(dispute_view(dispute)))


@operation("Peer-review a final report (RADPEER score)", path=ReportPath, request=PeerReviewRequest,
           responses={201: PeerReviewView, 403: None, 404: None, 409: None}, tags=TAGS, security=True)
async def review_report(request: web.Request) -> web.Response:
    """By a radiologist other than the author (403 for the author), once per reviewer and report (409), on a
    final report (409 before)."""
    principal = require_roles(request, *READING)
    report_id = path(request, ReportPath, "report").report_id
    body = await parse_body(request, PeerReviewRequest)
    review = await run(lambda: quality.review_report(uow(request), principal.organization_id, report_id,
                                                     principal.user_id, body.score, body.comment))
    return web.json_response(json_of(review_view(review)), status=201)


@operation("Peer-review statistics per radiologist: count per score, share of significant discrepancies",
           query=StatsQuery, responses={200: PeerReviewStats, 403: None}, tags=TAGS, security=True)
async def peer_review_stats(request: web.Request) -> web.Response:
    """Significant discrepancies are scores 2b, 3a and 3b; ``reviewed_from``/``reviewed_to`` are UTC days."""
    principal = require_roles(request, *MANAGING)
    query = parse_query(request, StatsQuery)
    start, end = day_range(query.reviewed_from, query.reviewed_to)
    async with request.app[database_key].session() as session:
        stats = await views.peer_review_stats(session, principal.organization_id, start, end)
    return web.json_response(stats)
