"""Reports over HTTP: start one from a template, autosave versions, submit, read, render, add addenda."""

from __future__ import annotations

from uuid import UUID

from aiohttp import web

from radcommon.auth import Principal, require_roles
from radcommon.db import Database
from radcommon.openapi import operation, parse_body, parse_query
from radcommon.problems import NotFound, Problem
from reporting import rendering, views
from reporting.config import ReportingSettings
from reporting.entrypoints import quality, templates
from reporting.entrypoints.common import (
    AUTHORING,
    READING,
    SEEING,
    ReportPath,
    VersionPath,
    database_key,
    path,
    run,
    settings_key,
    uow,
)
from reporting.entrypoints.models import (
    AddendumRequest,
    AddendumView,
    CreateReportRequest,
    CriticalFindingRequest,
    CriticalFindingView,
    DraftRequest,
    ReportList,
    ReportsQuery,
    ReportView,
    SubmitRequest,
    VersionList,
    VersionView,
)
from reporting.representation import addendum_view, finding_view, json_of
from reporting.service_layer import commands

TAGS = ["reports"]
OFFERED = ("text/plain", "text/html")


class NotAcceptable(Problem):
    status_code, title = 406, "Not Acceptable"


def add_routes(app: web.Application, db: Database, settings: ReportingSettings) -> None:
    app[database_key] = db
    app[settings_key] = settings
    app.router.add_post("/reports", create_report)
    app.router.add_get("/reports", list_reports)
    app.router.add_get("/reports/{report_id}", get_report)
    app.router.add_put("/reports/{report_id}/draft", save_draft)
    app.router.add_post("/reports/{report_id}/submit", submit_report)
    app.router.add_get("/reports/{report_id}/versions", list_versions)
    app.router.add_get("/reports/{report_id}/versions/{version}", get_version)
    app.router.add_get("/reports/{report_id}/rendering", render_report)
    app.router.add_post("/reports/{report_id}/addenda", add_addendum)
    app.router.add_post("/reports/{report_id}/critical-findings", flag_critical_finding)
    templates.add_routes(app)
    quality.add_routes(app)


async def _document(request: web.Request, principal: Principal, report_id: UUID, status: int = 200) -> web.Response:
    async with request.app[database_key].session() as session:
        found = await views.report_document(session, principal.organization_id, report_id,
                                            drafts_visible=principal.has_any(*AUTHORING))
    if found is None:
        raise NotFound("no such report")
    return web.json_response(json_of(found[0]), status=status)


@operation("Start the report of a study you claim, from a template", request=CreateReportRequest,
           responses={201: ReportView, 403: None, 404: None, 409: None, 422: None}, tags=TAGS, security=True)
async def create_report(request: web.Request) -> web.Response:
    """Only the radiologist who claims the worklist item (as the worklist last told reporting) starts its
    report (409 otherwise: claim it first); one open report a study. Version 1 is the template's defaults."""
    principal = require_roles(request, *READING)
    body = await parse_body(request, CreateReportRequest)
    report = await run(lambda: commands.create_report(uow(request), principal.organization_id, principal.user_id,
                                                      body.worklist_item_id, body.template_id))
    return await _document(request, principal, report.id, status=201)


@operation("The organisation's reports, newest change first", query=ReportsQuery,
           responses={200: ReportList, 403: None}, tags=TAGS, security=True)
async def list_reports(request: web.Request) -> web.Response:
    """Technicians and viewers see reports once submitted (no drafts)."""
    principal = require_roles(request, *SEEING)
    query = parse_query(request, ReportsQuery)
    async with request.app[database_key].session() as session:
        page = await views.report_page(session, principal.organization_id, query,
                                       drafts_visible=principal.has_any(*AUTHORING))
    return web.json_response(page)


@operation("A report as read: its content, signature, integrity, addenda and critical findings", path=ReportPath,
           responses={200: ReportView, 403: None, 404: None}, tags=TAGS, security=True)
async def get_report(request: web.Request) -> web.Response:
    """Once signed, ``content`` is the signed version and ``integrity`` compares the digest that was signed
    with the stored content's, computed now (``intact: false`` when the row was changed since)."""
    principal = require_roles(request, *SEEING)
    return await _document(request, principal, path(request, ReportPath, "report").report_id)


@operation("Autosave: a new version of the draft", path=ReportPath, request=DraftRequest,
           responses={200: ReportView, 403: None, 404: None, 409: None, 422: None}, tags=TAGS, security=True)
async def save_draft(request: web.Request) -> web.Response:
    """``base_version`` is the version the content was edited from; when it is not the newest the report was
    edited elsewhere (409). Content is checked against the report's template version: unknown sections, values
    of the wrong kind, choices outside the options are 422. Unchanged content makes no version. A final report
    is not edited (409): add an addendum."""
    principal = require_roles(request, *READING)
    report_id = path(request, ReportPath, "report").report_id
    body = await parse_body(request, DraftRequest)
    await run(lambda: commands.save_draft(uow(request), principal.organization_id, report_id, principal.user_id,
                                          body.content.model_dump(mode="json"), body.base_version))
    return await _document(request, principal, report_id)


@operation("Submit the newest version: preliminary, to be signed", path=ReportPath, request=SubmitRequest,
           responses={200: ReportView, 403: None, 404: None, 409: None, 422: None}, tags=TAGS, security=True)
async def submit_report(request: web.Request) -> web.Response:
    """Required sections must be filled (422). A preliminary report can still be edited and submitted again
    until a signature of its submitted version makes it final."""
    principal = require_roles(request, *READING)
    report_id = path(request, ReportPath, "report").report_id
    body = await parse_body(request, SubmitRequest)
    await run(lambda: commands.submit_report(uow(request), principal.organization_id, report_id, principal.user_id,
                                             body.version))
    return await _document(request, principal, report_id)


@operation("Every version of a report", path=ReportPath, responses={200: VersionList, 403: None, 404: None},
           tags=TAGS, security=True)
async def list_versions(request: web.Request) -> web.Response:
    principal = require_roles(request, *AUTHORING)
    report_id = path(request, ReportPath, "report").report_id
    async with request.app[database_key].session() as session:
        found = await views.versions(session, principal.organization_id, report_id)
    if found is None:
        raise NotFound("no such report")
    return web.json_response(found)


@operation("One version of a report, with its content and digest", path=VersionPath,
           responses={200: VersionView, 403: None, 404: None}, tags=TAGS, security=True)
async def get_version(request: web.Request) -> web.Response:
    principal = require_roles(request, *AUTHORING)
    wanted = path(request, VersionPath, "report version")
    async with request.app[database_key].session() as session:
        found = await views.version(session, principal.organization_id, wanted.report_id, wanted.version)
    if found is None:
        raise NotFound("no such report version")
    return web.json_response(found)


def negotiate(accept: str) -> str | None:
    """text/plain or text/html by the Accept header's q-values, the most specific range deciding
    (RFC 9110 section 12.5.1); text/plain when it says nothing, None when it refuses both."""
    ranges = []
    for part in accept.split(","):
        media, _, parameters = part.partition(";")
        q = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media.strip():
            ranges.append((media.strip().lower(), q))
    if not ranges:
        return OFFERED[0]

    def quality(offered: str) -> float:
        for candidate in (offered, offered.split("/")[0] + "/*", "*/*"):
            if found := [q for media, q in ranges if media == candidate]:
                return max(found)
        return 0.0

    best = max(OFFERED, key=quality)
    return best if quality(best) > 0 else None


@operation("The report as read, in text/plain or text/html (Accept), with each signature's manifestation",
           path=ReportPath, responses={200: None, 403: None, 404: None, 406: None}, tags=TAGS, security=True)
async def render_report(request: web.Request) -> web.Response:
    """A signed report and each signed addendum show the signer's printed name, the date and time (UTC) and
    the meaning of the signature, and whether the stored content still matches the signed digest (ALTERED
    since signing when it does not)."""
    principal = require_roles(request, *SEEING)
    report_id = path(request, ReportPath, "report").report_id
    media_type = negotiate(request.headers.get("Accept", ""))
    if media_type is None:
        raise NotAcceptable(f"the rendering is one of {', '.join(OFFERED)}")
    async with request.app[database_key].session() as session:
        found = await views.report_document(session, principal.organization_id, report_id,
                                            drafts_visible=principal.has_any(*AUTHORING))
    if found is None:
        raise NotFound("no such report")
    text = rendering.as_html(*found) if media_type == "text/html" else rendering.as_text(*found)
    return web.Response(text=text, content_type=media_type, charset="utf-8", headers={"Vary": "Accept"})


@operation("An addendum to a final report, to be signed on its own", path=ReportPath, request=AddendumRequest,
           responses={201: AddendumView, 403: None, 404: None, 409: None}, tags=TAGS, security=True)
async def add_addendum(request: web.Request) -> web.Response:
    """Any radiologist of the organisation; the addendum is pending until signed, then part of the report."""
    principal = require_roles(request, *READING)
    report_id = path(request, ReportPath, "report").report_id
    body = await parse_body(request, AddendumRequest)
    addendum = await run(lambda: commands.add_addendum(uow(request), principal.organization_id, report_id,
                                                       principal.user_id, body.text))
    return web.json_response(json_of(addendum_view(addendum, None)), status=201)


@operation("Flag a critical finding for the referring physician", path=ReportPath, request=CriticalFindingRequest,
           responses={201: CriticalFindingView, 403: None, 404: None}, tags=TAGS, security=True)
async def flag_critical_finding(request: web.Request) -> web.Response:
    """By the report's author, at any stage; notification delivers it and waits for acknowledgement."""
    principal = require_roles(request, *READING)
    report_id = path(request, ReportPath, "report").report_id
    body = await parse_body(request, CriticalFindingRequest)
    finding = await run(lambda: commands.flag_critical_finding(
        uow(request), principal.organization_id, report_id, principal.user_id, body.category, body.description,
        body.referring_physician_name, body.referring_physician_contact))
    return web.json_response(json_of(finding_view(finding)), status=201)
