"""Organisation administration over HTTP: organisations, users, invitations, roles, password reset."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web

from identity.adapters.admin_tables import InvitationRow
from identity.adapters.tables import OrganizationRow, UserRow
from identity.domain.errors import NotAllowed, PolicyViolation, SessionEnded
from identity.entrypoints import admin_models as m
from identity.service_layer import admin
from identity.service_layer.admin import Actor, Administration, OrganizationChange
from identity.service_layer.unit_of_work import IdentityUnitOfWork
from radcommon.auth import require_roles
from radcommon.contracts import RoleValues
from radcommon.openapi import operation, parse_body, parse_query
from radcommon.problems import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, UnprocessableContent

administration_key = web.AppKey("identity_administration", Administration)
admin_uow_key: web.AppKey[Callable[[], IdentityUnitOfWork]] = web.AppKey("identity_admin_uow")
PUBLIC = ("/api/auth/accept-invitation", "/api/auth/password-reset")
TAGS = ["administration"]
T = TypeVar("T")


def add_admin_routes(app: web.Application, administration: Administration,
                     uow: Callable[[], IdentityUnitOfWork]) -> None:
    app[administration_key] = administration
    app[admin_uow_key] = uow
    app.router.add_post("/api/organizations", create_organization)
    app.router.add_patch("/api/organizations/{organization_id}", update_organization)
    app.router.add_get("/api/users", list_users)
    app.router.add_post("/api/users/invitations", invite_user)
    app.router.add_put("/api/users/{user_id}/roles", change_roles)
    app.router.add_post("/api/auth/accept-invitation", accept_invitation)
    app.router.add_post("/api/auth/password-reset", request_password_reset)
    app.router.add_post("/api/auth/password-reset/confirm", confirm_password_reset)


async def run(request: web.Request, work: Callable[[IdentityUnitOfWork, Administration], Awaitable[T]]) -> T:
    try:
        async with request.app[admin_uow_key]() as uow:
            result = await work(uow, request.app[administration_key])
            uow.session.expunge_all()  # what a handler returns stays readable after the rollback on exit
            return result
    except SessionEnded as error:
        raise Unauthorized(str(error)) from None
    except NotAllowed as error:
        raise Forbidden(str(error)) from None
    except admin.NotFound as error:
        raise NotFound(str(error)) from None
    except (admin.AlreadyExists, admin.LastAdmin) as error:
        raise Conflict(str(error)) from None
    except admin.InvalidToken as error:
        raise BadRequest(str(error)) from None
    except PolicyViolation as error:
        raise UnprocessableContent("the password does not meet the organisation's policy",
                                   violations=error.violations) from None


def now() -> datetime:
    return datetime.now(UTC)


def actor(request: web.Request, *roles: RoleValues) -> Actor:
    principal = require_roles(request, *roles)
    return Actor(user_id=principal.user_id, session_id=principal.session_id)


def path_id(request: web.Request, name: str) -> UUID:
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise NotFound(f"no such {name.removesuffix('_id')}") from None


def reply(model: Any, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status, headers={"Cache-Control": "no-store"})


def organization_view(row: OrganizationRow) -> m.OrganizationResponse:
    return m.OrganizationResponse.model_validate(row, from_attributes=True)


def invitation_view(row: InvitationRow, mail_sent: bool) -> m.InvitationResponse:
    return m.InvitationResponse(id=row.id, organization_id=row.organization_id, email=row.email, role=row.role,
                                expires_at=row.expires_at, mail_sent=mail_sent)


def user_view(row: UserRow) -> m.UserResponse:
    return m.UserResponse.model_validate(row, from_attributes=True)


def change_of(body: m.OrganizationSettingsFields) -> OrganizationChange:
    return OrganizationChange(**body.model_dump(exclude_none=True, exclude={"slug", "admin_email"}))


@operation("Create an organisation and invite its first admin (platform operator)",
           request=m.CreateOrganizationRequest, responses={201: m.CreatedOrganizationResponse, 403: None, 409: None},
           tags=TAGS, security=True)
async def create_organization(request: web.Request) -> web.Response:
    who = actor(request, RoleValues.OPERATOR)
    body = await parse_body(request, m.CreateOrganizationRequest)
    organization, sent = await run(request, lambda uow, a: admin.create_organization_by_operator(
        uow, a, actor=who, name=body.name, slug=body.slug, admin_email=body.admin_email, settings=change_of(body),
        now=now()))
    return reply(m.CreatedOrganizationResponse(organization=organization_view(organization),
                                               admin_invitation=invitation_view(sent.invitation, sent.mail_sent)),
                 status=201)


@operation("Change an organisation's name or settings (its admin, or a platform operator)",
           request=m.UpdateOrganizationRequest, path=m.OrganizationPath,
           responses={200: m.OrganizationResponse, 403: None, 404: None}, tags=TAGS, security=True)
async def update_organization(request: web.Request) -> web.Response:
    who = actor(request, RoleValues.ADMIN, RoleValues.OPERATOR)
    organization_id = path_id(request, "organization_id")
    body = await parse_body(request, m.UpdateOrganizationRequest)
    organization = await run(request, lambda uow, a: admin.update_organization_settings(
        uow, a, actor=who, organization_id=organization_id, change=change_of(body), now=now()))
    return reply(organization_view(organization))


@operation("The users of the caller's organisation", query=m.UsersQuery, responses={200: m.UserPage, 403: None},
           tags=TAGS, security=True)
async def list_users(request: web.Request) -> web.Response:
    who = actor(request, RoleValues.ADMIN, RoleValues.MANAGER)
    query = parse_query(request, m.UsersQuery)
    users, total = await run(request, lambda uow, a: admin.list_users(uow, a, actor=who, limit=query.limit,
                                                                      offset=query.offset, now=now()))
    return reply(m.UserPage(items=[user_view(u) for u in users], total=total))


@operation("Invite someone into the caller's organisation by e-mail; replaces a pending invitation of theirs",
           request=m.InviteRequest, responses={201: m.InvitationResponse, 403: None, 409: None}, tags=TAGS,
           security=True)
async def invite_user(request: web.Request) -> web.Response:
    who = actor(request, RoleValues.ADMIN)
    body = await parse_body(request, m.InviteRequest)
    sent = await run(request, lambda uow, a: admin.invite_user(uow, a, actor=who, email=body.email,
                                                               role=RoleValues(body.role), now=now()))
    return reply(invitation_view(sent.invitation, sent.mail_sent), status=201)


@operation("Accept an invitation: choose a name and password; the account is created", tags=TAGS,
           request=m.AcceptInvitationRequest, responses={201: m.UserResponse, 400: None, 409: None})
async def accept_invitation(request: web.Request) -> web.Response:
    body = await parse_body(request, m.AcceptInvitationRequest)
    user = await run(request, lambda uow, a: admin.accept_invitation(uow, a, token=body.token,
                                                                     full_name=body.full_name,
                                                                     password=body.password, now=now()))
    return reply(user_view(user), status=201)


@operation("Set a user's roles (an admin of their organisation); their sessions end", request=m.RolesRequest,
           path=m.UserPath, responses={200: m.UserResponse, 403: None, 404: None, 409: None}, tags=TAGS,
           security=True)
async def change_roles(request: web.Request) -> web.Response:
    who = actor(request, RoleValues.ADMIN)
    user_id = path_id(request, "user_id")
    body = await parse_body(request, m.RolesRequest)
    user = await run(request, lambda uow, a: admin.change_roles(
        uow, a, actor=who, user_id=user_id, roles=[RoleValues(r) for r in body.roles], now=now()))
    return reply(user_view(user))


@operation("Ask for a password reset link by e-mail; the answer is the same whether the account exists",
           request=m.PasswordResetRequest, responses={202: m.PasswordResetAccepted}, tags=TAGS)
async def request_password_reset(request: web.Request) -> web.Response:
    body = await parse_body(request, m.PasswordResetRequest)
    await run(request, lambda uow, a: admin.request_password_reset(uow, a, email=body.email, now=now()))
    return reply(m.PasswordResetAccepted(), status=202)


@operation("Set a new password with a reset link's token; every session of the account ends",
           request=m.PasswordResetConfirmRequest, responses={204: None, 400: None}, tags=TAGS)
async def confirm_password_reset(request: web.Request) -> web.Response:
    body = await parse_body(request, m.PasswordResetConfirmRequest)
    await run(request, lambda uow, a: admin.confirm_password_reset(uow, a, token=body.token,
                                                                   password=body.password, now=now()))
    return web.Response(status=204)
