"""Report templates over HTTP: radiologists read them, admins and managers write them."""

from __future__ import annotations

from aiohttp import web

from radcommon.auth import require_roles
from radcommon.openapi import operation, parse_body, parse_query
from radcommon.problems import NotFound
from reporting import views
from reporting.domain.templates import Section
from reporting.entrypoints.common import (
    AUTHORING,
    MANAGING,
    TemplatePath,
    TemplateVersionPath,
    database_key,
    path,
    run,
    uow,
)
from reporting.entrypoints.models import ActiveRequest, TemplateList, TemplateRequest, TemplatesQuery, TemplateView
from reporting.representation import json_of, template_view
from reporting.service_layer import templates

TAGS = ["report templates"]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/report-templates", list_templates)
    app.router.add_post("/report-templates", create_template)
    app.router.add_get("/report-templates/{template_id}", get_template)
    app.router.add_put("/report-templates/{template_id}", revise_template)
    app.router.add_put("/report-templates/{template_id}/active", set_active)
    app.router.add_get("/report-templates/{template_id}/versions/{version}", get_template_version)


def _sections(body: TemplateRequest) -> list[Section]:
    return [Section(s.key, s.title, s.kind, tuple(s.options), s.default, s.required) for s in body.sections]


@operation("The organisation's report templates (a default set the first time)", query=TemplatesQuery,
           responses={200: TemplateList, 403: None}, tags=TAGS, security=True)
async def list_templates(request: web.Request) -> web.Response:
    """An organisation that never had templates is given the defaults (general, CT head, chest X-ray)."""
    principal = require_roles(request, *AUTHORING)
    query = parse_query(request, TemplatesQuery)
    async with request.app[database_key].session() as session:
        seeded = await views.templates_seeded(session, principal.organization_id)
    if not seeded:
        await templates.ensure_default_templates(uow(request), principal.organization_id)
    async with request.app[database_key].session() as session:
        found = await views.templates(session, principal.organization_id, query)
    return web.json_response(found)


@operation("A new template", request=TemplateRequest, responses={201: TemplateView, 403: None, 409: None},
           tags=TAGS, security=True)
async def create_template(request: web.Request) -> web.Response:
    """Section keys are distinct; a choice has options and its default is one of them. A name is taken once
    per organisation (409)."""
    principal = require_roles(request, *MANAGING)
    body = await parse_body(request, TemplateRequest)
    template = await run(lambda: templates.create_template(
        uow(request), principal.organization_id, principal.user_id, body.name, body.modality, body.body_part,
        _sections(body)))
    return web.json_response(json_of(template_view(template)), status=201)


@operation("A template's current version", path=TemplatePath, responses={200: TemplateView, 403: None, 404: None},
           tags=TAGS, security=True)
async def get_template(request: web.Request) -> web.Response:
    principal = require_roles(request, *AUTHORING)
    template_id = path(request, TemplatePath, "template").template_id
    async with request.app[database_key].session() as session:
        found = await views.template(session, principal.organization_id, template_id)
    if found is None:
        raise NotFound("no such template")
    return web.json_response(found)


@operation("One version of a template (the one a report was written in)", path=TemplateVersionPath,
           responses={200: TemplateView, 403: None, 404: None}, tags=TAGS, security=True)
async def get_template_version(request: web.Request) -> web.Response:
    principal = require_roles(request, *AUTHORING)
    wanted = path(request, TemplateVersionPath, "template version")
    async with request.app[database_key].session() as session:
        found = await views.template(session, principal.organization_id, wanted.template_id, wanted.version)
    if found is None:
        raise NotFound("no such template version")
    return web.json_response(found)


@operation("Edit a template: a new version (reports keep the version they were started from)", path=TemplatePath,
           request=TemplateRequest, responses={200: TemplateView, 403: None, 404: None, 409: None},
           tags=TAGS, security=True)
async def revise_template(request: web.Request) -> web.Response:
    principal = require_roles(request, *MANAGING)
    template_id = path(request, TemplatePath, "template").template_id
    body = await parse_body(request, TemplateRequest)
    template = await run(lambda: templates.revise_template(
        uow(request), principal.organization_id, template_id, principal.user_id, body.name, body.modality,
        body.body_part, _sections(body)))
    return web.json_response(json_of(template_view(template)))


@operation("Deactivate a template (no new report starts from it) or activate it again", path=TemplatePath,
           request=ActiveRequest, responses={200: TemplateView, 403: None, 404: None}, tags=TAGS, security=True)
async def set_active(request: web.Request) -> web.Response:
    principal = require_roles(request, *MANAGING)
    template_id = path(request, TemplatePath, "template").template_id
    body = await parse_body(request, ActiveRequest)
    template = await run(lambda: templates.set_template_active(uow(request), principal.organization_id,
                                                               template_id, body.active))
    return web.json_response(json_of(template_view(template)))
