"""GET /ws on the gateway as bootstrap builds it, over the embedded bus, with a fake worklist (and key set) upstream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.bootstrap import build
from gateway.config import GatewaySettings
from radcommon.auth import TokenError
from radcommon.config import CommonSettings
from radcommon.contracts import RoleValues, WorklistItemChangedV1
from radcommon.messaging import Message
from radcommon.messaging.local import LocalBus
from radcommon.testing import TokenMinter

ORG_A, ORG_B = uuid4(), uuid4()
ISSUER = "http://gateway.test"


@dataclass
class FakeWorklist:
    """GET /worklist/changes as worklist answers it, and the key set identity publishes."""

    minter: TokenMinter
    committed: dict[UUID, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[tuple[UUID, int]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def commit(self, organization_id: UUID, change: str = "updated") -> WorklistItemChangedV1:
        changes = self.committed.setdefault(organization_id, [])
        event = WorklistItemChangedV1(organization_id=organization_id, sequence=len(changes) + 1, item_id=uuid4(),
                                      change=change, item={"organization_id": str(organization_id)})
        changes.append({"sequence": event.sequence, "item_id": str(event.item_id), "change": change,
                        "item": event.item})
        return event

    def app(self) -> web.Application:
        verifier = self.minter.verifier()

        async def jwks(_: web.Request) -> web.Response:
            return web.json_response(self.minter.jwks)

        async def changes(request: web.Request) -> web.Response:
            try:
                principal = await verifier.verify(request.headers["Authorization"].removeprefix("Bearer "))
            except TokenError:
                return web.json_response({}, status=401)
            after, limit = int(request.query["after"]), int(request.query["limit"])
            self.calls.append((principal.organization_id, after))
            await self.gate.wait()
            mine = self.committed.get(principal.organization_id, [])
            return web.json_response({"changes": [c for c in mine if c["sequence"] > after][:limit],
                                      "last_sequence": len(mine)})

        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", jwks)
        app.router.add_get("/worklist/changes", changes)
        return app


@dataclass
class Gateway:
    client: TestClient  # type: ignore[type-arg]
    bus: LocalBus
    worklist: FakeWorklist
    minter: TokenMinter

    def token(self, organization_id: UUID = ORG_A, *roles: RoleValues, user_id: UUID | None = None,
              lifetime: timedelta = timedelta(minutes=5)) -> str:
        return self.minter.token(organization_id=organization_id, roles=roles or (RoleValues.RADIOLOGIST,),
                                 user_id=user_id, lifetime=lifetime)

    async def connect(self, query: str = "", token: str | None = None) -> aiohttp.ClientWebSocketResponse:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.ws_connect(f"/ws{query}", headers=headers)

    async def publish(self, *events: WorklistItemChangedV1) -> None:
        await self.bus.publish([Message(str(e.event_id), e.routing_key, e.model_dump_json().encode())
                                for e in events])


@pytest_asyncio.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    minter = TokenMinter(issuer=ISSUER)
    worklist = FakeWorklist(minter)
    worklist.gate.set()
    upstream = TestServer(worklist.app())
    await upstream.start_server()
    bus = LocalBus(tmp_path / "bus.db")
    await bus.connect()
    url = str(upstream.make_url("")).rstrip("/")
    settings = GatewaySettings(live_auth_timeout_seconds=0.5, live_queue_size=5, live_max_connections_per_user=2,
                               live_page_size=3)
    service = build(CommonSettings(data_dir=tmp_path, public_url=ISSUER), bus, embedded=True, settings=settings,
                    upstreams={"worklist": url, "identity": url, "dicom-ingest": url})
    client = TestClient(TestServer(service.app))
    await client.start_server()
    try:
        yield Gateway(client, bus, worklist, minter)
    finally:
        await client.close()
        for stop in service.on_stop:
            await stop()
        await bus.close()
        await upstream.close()


async def receive(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    return [await ws.receive_json(timeout=5) for _ in range(count)]


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    message = await ws.receive(timeout=5)
    while message.type == aiohttp.WSMsgType.TEXT:  # what was sent before the close
        message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.CLOSE, message
    return ws.close_code, message.extra or ""


def sequences(messages: list[dict[str, Any]]) -> list[int | str]:
    return [m["sequence"] if m["type"] == "worklist.changed" else m["type"] for m in messages]


async def test_a_header_token_gets_its_backlog_then_ready_then_its_organisations_live_changes_only(
        gateway: Gateway) -> None:
    backlog = [gateway.worklist.commit(ORG_A) for _ in range(4)]
    gateway.worklist.commit(ORG_B)
    ws = await gateway.connect("?after=1", gateway.token())
    first = await receive(ws, 4)
    assert sequences(first) == [2, 3, 4, "ready"]
    assert first[0] == {"type": "worklist.changed", "sequence": 2, "item_id": str(backlog[1].item_id),
                        "change": "updated", "item": {"organization_id": str(ORG_A)}}
    assert first[-1] == {"type": "ready", "last_sequence": 4}

    other, mine = gateway.worklist.commit(ORG_B), gateway.worklist.commit(ORG_A, "claimed")
    await gateway.publish(other, mine, backlog[3])  # backlog[3]: published twice, sent once
    [live] = await receive(ws, 1)
    assert (live["sequence"], live["change"], live["item_id"]) == (5, "claimed", str(mine.item_id))
    with pytest.raises(TimeoutError):  # nothing else comes: not the other organisation's, not the repeat
        await ws.receive(timeout=0.3)
    await ws.close()


async def test_a_browser_authenticates_with_its_first_message_and_resumes_after_what_it_saw(gateway: Gateway) -> None:
    for _ in range(3):
        gateway.worklist.commit(ORG_A)
    ws = await gateway.connect()
    await ws.send_json({"type": "resume", "after": 2})
    await ws.send_json({"type": "auth", "access_token": gateway.token(ORG_A, RoleValues.VIEWER)})
    assert sequences(await receive(ws, 2)) == [3, "ready"]
    await ws.close()

    ws = await gateway.connect()
    await ws.send_json({"type": "auth", "access_token": gateway.token(), "after": 0})
    assert sequences(await receive(ws, 4)) == [1, 2, 3, "ready"]
    await ws.close()


async def test_no_token_a_bad_one_or_an_expired_one_is_4401(gateway: Gateway) -> None:
    silent = await gateway.connect()
    assert (await closed_with(silent))[0] == 4401  # nothing within live_auth_timeout_seconds

    bad = await gateway.connect(token="not.a.token")
    assert await closed_with(bad) == (4401, "invalid token: malformed")

    expired = await gateway.connect(token=gateway.token(lifetime=timedelta(minutes=-1)))
    assert await closed_with(expired) == (4401, "invalid token: expired")

    foreign = await gateway.connect()
    await foreign.send_json({"type": "auth", "access_token": TokenMinter(issuer=ISSUER).token(organization_id=ORG_A)})
    assert (await closed_with(foreign))[0] == 4401

    chatty = await gateway.connect()
    await chatty.send_json({"type": "hello"})
    assert (await closed_with(chatty))[0] == 4401


async def test_a_role_that_may_not_see_the_worklist_is_4403(gateway: Gateway) -> None:
    ws = await gateway.connect(token=gateway.token(ORG_A, RoleValues.OPERATOR))
    assert (await closed_with(ws))[0] == 4403
    ws = await gateway.connect()
    await ws.send_json({"type": "auth", "access_token": gateway.minter.token(organization_id=ORG_A, roles=())})
    assert (await closed_with(ws))[0] == 4403


async def test_a_token_that_expires_unrenewed_closes_4401_and_a_renewal_keeps_the_socket(gateway: Gateway) -> None:
    user = uuid4()
    first = gateway.token(user_id=user, lifetime=timedelta(seconds=2))  # "exp" is in whole seconds: 1 to 2 s
    ws = await gateway.connect(token=first)
    assert sequences(await receive(ws, 1)) == ["ready"]
    await ws.send_json({"type": "auth", "access_token": gateway.token(user_id=user, lifetime=timedelta(seconds=4))})
    await asyncio.sleep(jwt.decode(first, options={"verify_signature": False})["exp"] - time.time() + 0.3)
    event = gateway.worklist.commit(ORG_A)
    await gateway.publish(event)
    assert sequences(await receive(ws, 1)) == [1]
    code, reason = await closed_with(ws)  # the second token runs out
    assert (code, reason) == (4401, "the token expired; renew it before it does")
    assert len([c for c in gateway.worklist.calls if c[0] == ORG_A]) >= 2  # the renewal was checked by worklist


async def test_a_renewal_with_another_users_token_is_4403(gateway: Gateway) -> None:
    ws = await gateway.connect(token=gateway.token())
    assert sequences(await receive(ws, 1)) == ["ready"]
    await ws.send_json({"type": "auth", "access_token": gateway.token()})  # same organisation, another user
    assert await closed_with(ws) == (4403, "the new token is another user's")


async def test_bad_input_is_4400(gateway: Gateway) -> None:
    ws = await gateway.connect("?after=-3", gateway.token())
    assert (await closed_with(ws))[0] == 4400
    ws = await gateway.connect()
    await ws.send_str("{not json")
    assert (await closed_with(ws))[0] == 4400
    ws = await gateway.connect()
    await ws.send_json({"type": "auth", "access_token": gateway.token(), "after": "soon"})
    assert (await closed_with(ws))[0] == 4400


async def test_a_feed_that_falls_behind_is_closed_4408_and_resumes_where_it_was(gateway: Gateway) -> None:
    ws = await gateway.connect(token=gateway.token())
    assert sequences(await receive(ws, 1)) == ["ready"]
    gateway.worklist.gate.clear()  # worklist stalls: the feed waits on it while changes pile up
    events = [gateway.worklist.commit(ORG_A) for _ in range(9)]
    await gateway.publish(events[1])  # a gap: the feed asks worklist for 1
    await asyncio.sleep(0.1)
    await gateway.publish(*events[2:])  # 7 more than its queue of 5
    await asyncio.sleep(0.1)
    gateway.worklist.gate.set()
    code, reason = await closed_with(ws)
    assert code == 4408 and "resume" in reason

    again = await gateway.connect("?after=0", gateway.token())
    assert sequences(await receive(again, 10)) == [*range(1, 10), "ready"]
    await again.close()


async def test_connections_per_user_are_capped_and_counted_down(gateway: Gateway) -> None:
    user = uuid4()
    open_ = [await gateway.connect(token=gateway.token(user_id=user)) for _ in range(2)]
    for ws in open_:
        assert sequences(await receive(ws, 1)) == ["ready"]
    third = await gateway.connect(token=gateway.token(user_id=user))
    assert (await closed_with(third))[0] == 4429
    await open_[0].close()
    await asyncio.sleep(0.05)
    fourth = await gateway.connect(token=gateway.token(user_id=user))
    assert sequences(await receive(fourth, 1)) == ["ready"]
    for ws in (open_[1], fourth):
        await ws.close()


async def test_plain_http_on_ws_is_authenticated_by_the_gateway_then_told_to_upgrade(gateway: Gateway) -> None:
    async with gateway.client.get("/ws") as response:
        assert response.status == 401
    operator = gateway.token(ORG_A, RoleValues.OPERATOR)
    async with gateway.client.get("/ws", headers={"Authorization": f"Bearer {operator}"}) as response:
        assert response.status == 403
    async with gateway.client.get("/ws", headers={"Authorization": f"Bearer {gateway.token()}"}) as response:
        assert response.status == 426
        assert json.loads(await response.text())["title"] == "Upgrade Required"


async def test_a_gateway_shutting_down_closes_its_sockets_1001(gateway: Gateway) -> None:
    ws = await gateway.connect(token=gateway.token())
    assert sequences(await receive(ws, 1)) == ["ready"]
    runner = gateway.client.server.runner
    assert runner is not None
    await runner.shutdown()  # the on_shutdown hooks, as AppRunner.cleanup runs them
    assert await closed_with(ws) == (1001, "the gateway is shutting down")
