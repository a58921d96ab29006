"""Organisation administration through the gateway, with mail delivered to a real SMTP server on loopback."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from openapi_spec_validator import validate

from identity.adapters.admin_tables import InvitationRow
from radcommon.contracts import RoleValues
from support.platform import DEMO_PASSWORD, running_platform
from telerad.platform import Platform

pytestmark = pytest.mark.integration
PASSWORD = "a sturdy passphrase for tests"
TOKEN = re.compile(r"#token=([A-Za-z0-9_-]+)")


class Inbox:
    """aiosmtpd's handler: keeps every message it is given (in the server's own thread)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    async def token_for(self, address: str, timeout: float = 10) -> str:
        """The token in the link of the next message to ``address``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if message["To"] == address:
                    self.messages.remove(message)
                    body = message.get_body(("plain",))
                    assert body is not None and message["From"]
                    match = TOKEN.search(body.get_content())
                    assert match, body.get_content()
                    return match.group(1)
            await asyncio.sleep(0.05)
        raise AssertionError(f"no mail to {address}; the server has {[m['To'] for m in self.messages]}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[Inbox, int]]:
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    await asyncio.to_thread(controller.start)
    try:
        yield handler, controller.port
    finally:
        await asyncio.to_thread(controller.stop)


@pytest.fixture
async def platform(tmp_path: Path, inbox: tuple[Inbox, int]) -> AsyncIterator[Platform]:
    smtp = {"smtp_host": "127.0.0.1", "smtp_port": inbox[1], "smtp_starttls": False}
    async with running_platform(tmp_path, identity=smtp) as running:
        yield running


class Api:
    def __init__(self, client: aiohttp.ClientSession, base: str) -> None:
        self.client, self.base = client, base

    async def call(self, method: str, path: str, bearer: str | None = None, /, **body: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        async with self.client.request(method, self.base + path, json=body or None, headers=headers) as response:
            payload = await response.json(content_type=None) if response.content_length != 0 else None
            return response.status, payload

    async def sign_in(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        status, tokens = await self.call("POST", "/api/auth/login", email=email, password=password)
        assert status == 200, tokens
        return tokens  # type: ignore[no-any-return]

    async def accept(self, token: str, password: str = PASSWORD) -> tuple[int, Any]:
        return await self.call("POST", "/api/auth/accept-invitation", token=token, full_name="New User",
                               password=password)


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as client:
        yield Api(client, platform.gateway_url)


async def test_an_operator_founds_an_organisation_whose_admin_invites_and_manages_a_radiologist(
        platform: Platform, api: Api, inbox: tuple[Inbox, int]) -> None:
    mail, _ = inbox
    await platform.services["identity"].create_organization(  # type: ignore[attr-defined]
        organization_id=uuid4(), name="Telerad Platform", slug="platform", password=PASSWORD,
        users=[("operator@platform.test", "Olga Operator", [RoleValues.OPERATOR])])
    operator = (await api.sign_in("operator@platform.test"))["access_token"]

    status, created = await api.call("POST", "/api/organizations", operator, name="Northern Imaging",
                                     slug="northern", admin_email="boss@north.test", password_min_length=14,
                                     require_2fa_roles=["radiologist"])
    assert status == 201, created
    assert created["organization"]["password_min_length"] == 14
    assert created["admin_invitation"]["mail_sent"] is True and created["admin_invitation"]["role"] == "admin"
    status, boss_user = await api.accept(await mail.token_for("boss@north.test"))
    assert status == 201 and boss_user["roles"] == ["admin"], boss_user
    boss = (await api.sign_in("boss@north.test"))["access_token"]

    status, invitation = await api.call("POST", "/api/users/invitations", boss, email="Rad@North.test",
                                        role="radiologist")
    assert status == 201 and invitation["email"] == "rad@north.test", invitation
    token = await mail.token_for("rad@north.test")
    status, weak = await api.accept(token, password="too short!")
    assert status == 422 and weak["violations"], weak
    status, rad_user = await api.accept(token)
    assert status == 201, rad_user
    status, again = await api.accept(token)
    assert status == 400 and "used" in again["detail"], again
    rad = await api.sign_in("rad@north.test")

    status, page = await api.call("GET", "/api/users", boss)
    assert status == 200 and sorted(u["email"] for u in page["items"]) == ["boss@north.test", "rad@north.test"]
    status, changed = await api.call("PUT", f"/api/users/{rad_user['id']}/roles", boss, roles=["technician"])
    assert status == 200 and changed["roles"] == ["technician"], changed

    status, refused = await api.call("POST", "/api/auth/refresh-token", refresh_token=rad["refresh_token"])
    assert status == 401, refused
    status, _ = await api.call("GET", "/api/auth/session-status", rad["access_token"])
    assert status == 401
    renewed = await api.sign_in("rad@north.test")
    status, session = await api.call("GET", "/api/auth/session-status", renewed["access_token"])
    assert status == 200 and session["roles"] == ["technician"], session

    status, last = await api.call("PUT", f"/api/users/{boss_user['id']}/roles", boss, roles=["manager"])
    assert status == 409 and "at least one admin" in last["detail"], last
    status, patched = await api.call("PATCH", f"/api/organizations/{created['organization']['id']}", operator,
                                     idle_timeout_minutes=15)
    assert status == 200 and patched["idle_timeout_minutes"] == 15, patched


async def test_an_expired_invitation_is_refused_and_a_new_one_replaces_it(
        platform: Platform, api: Api, inbox: tuple[Inbox, int]) -> None:
    mail, _ = inbox
    admin = (await api.sign_in("admin@demo.telerad", DEMO_PASSWORD))["access_token"]
    status, _ = await api.call("POST", "/api/users/invitations", admin, email="late@demo.test", role="viewer")
    assert status == 201
    expired = await mail.token_for("late@demo.test")
    async with platform.services["identity"].db.engine.begin() as conn:  # type: ignore[union-attr]
        await conn.execute(sa.update(InvitationRow.__table__).values(  # type: ignore[arg-type]
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))

    status, refused = await api.accept(expired)
    assert status == 400 and "expired" in refused["detail"], refused
    status, _ = await api.call("POST", "/api/users/invitations", admin, email="late@demo.test", role="viewer")
    assert status == 201
    fresh = await mail.token_for("late@demo.test")
    assert (await api.accept(expired))[0] == 400
    status, user = await api.accept(fresh)
    assert status == 201 and user["roles"] == ["viewer"], user

    status, taken = await api.call("POST", "/api/users/invitations", admin, email="radiologist@demo.telerad",
                                   role="viewer")
    assert status == 409 and "already exists" in taken["detail"], taken


async def test_a_password_reset_works_once_ends_sessions_and_tells_strangers_the_same(
        api: Api, inbox: tuple[Inbox, int]) -> None:
    mail, _ = inbox
    email = "radiologist@demo.telerad"
    before = await api.sign_in(email, DEMO_PASSWORD)

    known = await api.call("POST", "/api/auth/password-reset", email=email)
    unknown = await api.call("POST", "/api/auth/password-reset", email="nobody@demo.telerad")
    assert known == unknown and known[0] == 202, (known, unknown)
    token = await mail.token_for(email)

    status, weak = await api.call("POST", "/api/auth/password-reset/confirm", token=token, password="short")
    assert status == 422, weak
    assert (await api.call("POST", "/api/auth/password-reset/confirm", token=token, password=PASSWORD))[0] == 204
    status, again = await api.call("POST", "/api/auth/password-reset/confirm", token=token, password=PASSWORD)
    assert status == 400, again

    assert (await api.call("POST", "/api/auth/refresh-token", refresh_token=before["refresh_token"]))[0] == 401
    assert (await api.call("POST", "/api/auth/login", email=email, password=DEMO_PASSWORD))[0] == 401
    await api.sign_in(email, PASSWORD)
    assert not [m for m in mail.messages if m["To"] == "nobody@demo.telerad"]


async def test_an_admin_sees_and_changes_only_their_own_organisation(platform: Platform, api: Api) -> None:
    other = uuid4()
    demo = platform.common.default_organization_id
    await platform.services["identity"].create_organization(  # type: ignore[attr-defined]
        organization_id=other, name="Other Clinic", slug="other", password=PASSWORD,
        users=[("admin@other.test", "Otto Admin", [RoleValues.ADMIN]),
               ("radiologist@other.test", "Ora Radiologist", [RoleValues.RADIOLOGIST])])
    admin = (await api.sign_in("admin@demo.telerad", DEMO_PASSWORD))["access_token"]
    other_admin = (await api.sign_in("admin@other.test"))["access_token"]

    status, page = await api.call("GET", "/api/users", admin)
    assert status == 200 and page["total"] == 4 and all(u["email"].endswith("@demo.telerad") for u in page["items"])
    demo_radiologist = next(u for u in page["items"] if u["email"] == "radiologist@demo.telerad")
    status, page = await api.call("GET", "/api/users", other_admin)
    assert status == 200 and {u["email"] for u in page["items"]} == {"admin@other.test", "radiologist@other.test"}
    other_radiologist = next(u for u in page["items"] if u["email"] == "radiologist@other.test")

    for token, path in ((admin, f"/api/users/{other_radiologist['id']}/roles"),
                        (other_admin, f"/api/users/{demo_radiologist['id']}/roles"),
                        (admin, "/api/users/not-a-user/roles")):
        status, problem = await api.call("PUT", path, token, roles=["viewer"])
        assert status == 404 and problem["status"] == 404, problem
    assert (await api.call("PATCH", f"/api/organizations/{other}", admin, idle_timeout_minutes=5))[0] == 404
    status, own = await api.call("PATCH", f"/api/organizations/{demo}", admin, max_concurrent_sessions=3)
    assert status == 200 and own["max_concurrent_sessions"] == 3, own
    assert (await api.call("POST", "/api/organizations", admin, name="Mine", slug="mine",
                           admin_email="me@mine.test"))[0] == 403

    async with aiohttp.ClientSession() as client, client.get(
            f"{platform.services['identity'].http_url}/openapi.json") as response:
        document = await response.json()
    validate(document)
    assert {"/api/organizations", "/api/organizations/{organization_id}", "/api/users", "/api/users/invitations",
            "/api/users/{user_id}/roles", "/api/auth/accept-invitation", "/api/auth/password-reset",
            "/api/auth/password-reset/confirm"} <= document["paths"].keys()
