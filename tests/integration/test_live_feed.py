"""The live feed (GET /ws) of a running platform, embedded (in-process bus) and distributed (RabbitMQ, PostgreSQL):
a pushed study reaches the users of its organisation only, a client that was away resumes with exactly what it
missed, and the socket refuses what it must."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import jwt
import pytest
import pytest_asyncio
from pydicom.uid import generate_uid

from radcommon.contracts import RoleValues, StudyReceivedV1
from radcommon.messaging import Message
from support.platform import DEMO_PASSWORD, KINDS, identity_signing_key, platform_of
from support.studies import ORG_ROOT, storescu, write_ct_study
from telerad.platform import Platform

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PW = "a long password for the live feed tests"
RADIOLOGIST = "radiologist@demo.telerad"


@dataclass
class Api:
    platform: Platform
    client: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.platform.gateway_url

    async def token(self, email: str = RADIOLOGIST, password: str = DEMO_PASSWORD) -> str:
        async with self.client.post(f"{self.url}/api/auth/login", json={"email": email, "password": password}) as r:
            assert r.status == 200, await r.text()
            return str((await r.json())["access_token"])

    async def organization(self, *roles: RoleValues) -> tuple[UUID, list[str]]:
        slug = f"live-{uuid4().hex[:10]}"
        emails = [f"{role.value}.{n}@{slug}.test" for n, role in enumerate(roles)]
        organization_id = uuid4()
        assert await self.platform.services["identity"].create_organization(  # type: ignore[attr-defined]
            organization_id=organization_id, name=f"Organisation {slug}", slug=slug,
            users=[(email, f"User {n}", [role]) for n, (email, role) in enumerate(zip(emails, roles, strict=True))],
            password=PW)
        return organization_id, emails

    async def connect(self, query: str = "", token: str | None = None) -> aiohttp.ClientWebSocketResponse:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.ws_connect(f"{self.url}/ws{query}", headers=headers)

    async def changes(self, token: str, after: int) -> dict[str, Any]:
        async with self.client.get(f"{self.url}/api/worklist/changes", params={"after": str(after), "limit": "500"},
                                   headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200, await r.text()
            return await r.json()  # type: ignore[no-any-return]

    async def study_for(self, organization_id: UUID, accession_number: str) -> str:
        """A study announced on the bus, as dicom-ingest would: for organisations with no modality of their own."""
        event = StudyReceivedV1(organization_id=organization_id, study_instance_uid=generate_uid(ORG_ROOT),
                                patient_id="PATL", patient_name="Live^Feed", accession_number=accession_number,
                                modalities=["MR"], number_of_series=1, number_of_instances=1)
        await self.platform.bus.publish([Message(str(event.event_id), event.routing_key,
                                                 event.model_dump_json().encode())])
        return event.study_instance_uid


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=KINDS)
async def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    gateway = {"login_burst": 10_000, "live_auth_timeout_seconds": 1}
    data_dir = tmp_path_factory.mktemp(request.param)
    async with platform_of(request.param, data_dir, gateway=gateway) as platform, aiohttp.ClientSession() as client:
        yield Api(platform, client)


async def next_message(ws: aiohttp.ClientWebSocketResponse, timeout: float = 20) -> dict[str, Any]:
    message = await ws.receive(timeout=timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, (message, ws.close_code)
    return message.json()  # type: ignore[no-any-return]


async def changes_until(ws: aiohttp.ClientWebSocketResponse, done: Any, timeout: float = 30) -> list[dict[str, Any]]:
    """Every change received until ``done(changes)`` holds."""
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(received):
        message = await next_message(ws, timeout=max(0.1, deadline - time.monotonic()))
        assert message["type"] == "worklist.changed", message
        received.append(message)
    return received


async def nothing_more(ws: aiohttp.ClientWebSocketResponse, seconds: float = 1.5) -> None:
    with pytest.raises(TimeoutError):
        message = await ws.receive(timeout=seconds)
        raise AssertionError(f"unexpected: {message}")


async def drain(ws: aiohttp.ClientWebSocketResponse, seconds: float = 1.5) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    try:
        while True:
            received.append(await next_message(ws, timeout=seconds))
    except TimeoutError:
        return received


async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    message = await ws.receive(timeout=10)
    assert message.type == aiohttp.WSMsgType.CLOSE, message
    return ws.close_code


def about(study_instance_uid: str) -> Any:
    return lambda changes: any(c["item"]["study_instance_uid"] == study_instance_uid for c in changes)


async def test_a_pushed_study_reaches_its_organisation_live_and_no_other(api: Api, tmp_path: Path) -> None:
    demo = await api.connect(token=await api.token())
    ready = await next_message(demo)
    assert ready["type"] == "ready" and ready["last_sequence"] >= 0
    other_id, [other_radiologist, other_admin] = await api.organization(RoleValues.RADIOLOGIST, RoleValues.ADMIN)
    others = [await api.connect(token=await api.token(other_radiologist, PW)), await api.connect()]
    await others[1].send_json({"type": "auth", "access_token": await api.token(other_admin, PW)})
    assert [await next_message(ws) for ws in others] == [{"type": "ready", "last_sequence": 0}] * 2

    study = write_ct_study(tmp_path / "study", series=1, instances_per_series=2, accession_number="LIVE1")
    await storescu(api.platform.dicom_port, *study.files)
    received = await changes_until(demo, about(study.study_instance_uid))
    mine = [c for c in received if c["item"]["study_instance_uid"] == study.study_instance_uid]
    assert mine[0]["change"] == "created"
    assert mine[0]["item"]["accession_number"] == "LIVE1"
    assert mine[0]["item"]["organization_id"] == str(api.platform.common.default_organization_id)
    assert [c["sequence"] for c in received] == list(range(ready["last_sequence"] + 1,
                                                          ready["last_sequence"] + 1 + len(received)))
    for ws in others:
        await nothing_more(ws)

    # the other organisation's own study reaches its users, and not the demo organisation's
    uid = await api.study_for(other_id, "LIVE2")
    for ws in others:
        [created, *_] = await changes_until(ws, about(uid))
        assert (created["sequence"], created["change"], created["item"]["organization_id"]) == (1, "created",
                                                                                               str(other_id))
    late = await drain(demo)  # the demo study's own later changes (an assignment) may still come, nothing else
    assert {c["item"]["organization_id"] for c in late} <= {str(api.platform.common.default_organization_id)}
    assert uid not in {c["item"]["study_instance_uid"] for c in late}
    for ws in (demo, *others):
        await ws.close()


async def test_a_client_that_was_away_resumes_with_exactly_what_it_missed_in_order(api: Api) -> None:
    token = await api.token()
    first = await api.connect(token=token)
    ready = await next_message(first)
    seen = ready["last_sequence"]
    await first.close()

    organization_id = api.platform.common.default_organization_id
    missed_uids = [await api.study_for(organization_id, f"AWAY{n}") for n in range(3)]
    deadline = time.monotonic() + 30
    while True:  # until worklist has them all
        page = await api.changes(token, seen)
        if {c["item"]["study_instance_uid"] for c in page["changes"]} >= set(missed_uids):
            break
        assert time.monotonic() < deadline, page
        await asyncio.sleep(0.2)

    again = await api.connect(f"?after={seen}")
    await again.send_json({"type": "auth", "access_token": token})
    resumed: list[dict[str, Any]] = []
    while (message := await next_message(again))["type"] != "ready":
        resumed.append(message)
    newest = message["last_sequence"]
    expected = [c for c in (await api.changes(token, seen))["changes"] if c["sequence"] <= newest]
    assert [c["sequence"] for c in resumed] == list(range(seen + 1, newest + 1))
    assert [(c["sequence"], c["item_id"], c["change"], c["item"]) for c in resumed] == [
        (c["sequence"], c["item_id"], c["change"], c["item"]) for c in expected]
    assert {c["item"]["study_instance_uid"] for c in resumed} >= set(missed_uids)

    later = await api.study_for(organization_id, "BACK")
    live = await changes_until(again, about(later))
    # live changes follow the backlog: nothing twice, nothing skipped
    assert [c["sequence"] for c in live] == list(range(newest + 1, newest + 1 + len(live)))
    await again.close()


async def test_no_bad_or_expired_token_is_4401_and_a_role_that_may_not_see_the_worklist_is_4403(api: Api) -> None:
    silent = await api.connect()
    assert await close_code(silent) == 4401

    garbage = await api.connect()
    await garbage.send_json({"type": "auth", "access_token": "eyJhbGciOiJub25lIn0.e30."})
    assert await close_code(garbage) == 4401

    expired = await api.connect(token=await expired_token(api.platform))
    assert await close_code(expired) == 4401

    _, [operator] = await api.organization(RoleValues.OPERATOR)
    forbidden = await api.connect(token=await api.token(operator, PW))
    assert await close_code(forbidden) == 4403

    allowed = await api.connect(token=await api.token("technician@demo.telerad"))
    assert (await next_message(allowed))["type"] == "ready"
    await allowed.send_json({"type": "auth", "access_token": await api.token("manager@demo.telerad")})
    assert await close_code(allowed) == 4403  # a renewal naming another user


async def expired_token(platform: Platform) -> str:
    """A token identity's own key signed, for the demo radiologist, that expired a minute ago."""
    kid, key = await identity_signing_key(platform)
    now = datetime.now(UTC)
    claims = {"iss": platform.common.public_url, "aud": "telerad", "sub": str(uuid4()),
              "org": str(platform.common.default_organization_id), "roles": ["radiologist"], "sid": str(uuid4()),
              "email": RADIOLOGIST, "amr": ["pwd"], "iat": int((now - timedelta(minutes=6)).timestamp()),
              "nbf": int((now - timedelta(minutes=6)).timestamp()),
              "exp": int((now - timedelta(minutes=1)).timestamp()), "jti": str(uuid4())}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid, "typ": "at+jwt"})
