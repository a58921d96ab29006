"""The worklist end to end, over the gateway: claims that cannot race, tenant isolation of every route,
SLA deadlines that survive a restart, and one alert per deadline with two worklist replicas.

Studies arrive as dicom-ingest announces them (``study.received.v1`` on the bus); the storescu path
to the same event is covered by test_slice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import pytest
import pytest_asyncio

from gateway.domain import ROUTE_ROLES
from radcommon.contracts import PriorityValues, RoleValues, StudyReceivedV1
from radcommon.messaging import Bus, Message
from support.platform import KINDS, distributed_servers, platform_of, rabbitmq_test_bus, running_platform, sign_in
from support.worklist import message
from telerad.platform import Platform, build_service
from worklist.config import WorklistSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
PW = "a long password for worklist tests"
FAST = {"monitor_seconds": 0.1}


@dataclass
class Member:
    email: str
    role: RoleValues
    token: str = ""
    user_id: str = ""


@dataclass
class Org:
    id: UUID
    members: list[Member]

    def of(self, role: RoleValues) -> list[Member]:
        return [m for m in self.members if m.role is role]


class Client:
    def __init__(self, platform: Platform, session: aiohttp.ClientSession) -> None:
        self.platform, self.session = platform, session

    async def call(self, method: str, path: str, member: Member, json: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.platform.gateway_url + path, json=json,
                                        headers={"Authorization": f"Bearer {member.token}"}) as response:
            text = await response.text()
            return response.status, (await response.json(content_type=None)) if text else None

    async def organization(self, radiologists: int = 2) -> Org:
        slug = f"w-{uuid4().hex[:10]}"
        roles = [RoleValues.MANAGER, RoleValues.VIEWER] + [RoleValues.RADIOLOGIST] * radiologists
        members = [Member(f"{role.value}.{n}@{slug}.test", role) for n, role in enumerate(roles)]
        org = Org(uuid4(), members)
        assert await self.platform.services["identity"].create_organization(  # type: ignore[attr-defined]
            organization_id=org.id, name=f"Centre {slug}", slug=slug,
            users=[(m.email, f"Dr {n}", [m.role]) for n, m in enumerate(members)], password=PW)
        for member in members:
            tokens = await sign_in(self.platform.gateway_url, member.email, PW)
            member.token = tokens["access_token"]
            member.user_id = _subject(member.token)
        manager = org.of(RoleValues.MANAGER)[0]

        async def readers_known() -> bool:
            status, body = await self.call("GET", "/api/worklist/readers", manager)
            return status == 200 and len(body["readers"]) == radiologists
        await eventually(readers_known, "the radiologists never became readers")
        return org

    async def items(self, member: Member, query: str = "") -> list[dict[str, Any]]:
        status, body = await self.call("GET", f"/api/worklist{query}", member)
        assert status == 200, body
        return body["items"]  # type: ignore[no-any-return]


def _subject(token: str) -> str:
    import jwt
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def eventually(check: Callable[[], Awaitable[bool]], failure: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(failure)


def a_study(org: Org, uid: str, priority: PriorityValues = PriorityValues.ROUTINE, **extra: Any) -> StudyReceivedV1:
    return StudyReceivedV1(organization_id=org.id, study_instance_uid=uid, patient_id=f"PID{uid}",
                           patient_name=f"Patient^{uid.replace('.', '_')}", accession_number=f"A{uid[-8:]}",
                           modalities=["CT"], body_parts=["HEAD"], priority=priority, number_of_series=1,
                           number_of_instances=3, **extra)


async def announce(bus: Bus, *events: StudyReceivedV1) -> None:
    await bus.publish([message(event) for event in events])


def a_uid() -> str:
    return f"2.25.{uuid4().int}"


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=KINDS)
async def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    """Shared by the tests of this module that take it: each works in organisations of its own (and signs in
    more often than the gateway lets one address do by default)."""
    async with platform_of(request.param, tmp_path_factory.mktemp(request.param), worklist=FAST,
                           gateway={"login_burst": 1000}) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def client(platform: Platform) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(platform, session)


async def test_concurrent_claims_one_wins_the_rest_get_409(platform: Platform, client: Client) -> None:
    org = await client.organization(radiologists=4)
    manager, readers = org.of(RoleValues.MANAGER)[0], org.of(RoleValues.RADIOLOGIST)
    for reader in readers:  # nobody available: the studies wait unassigned, free for whoever claims first
        status, _ = await client.call("PUT", "/api/worklist/availability", reader, {"available": False})
        assert status == 200
    uids = [a_uid() for _ in range(5)]
    await announce(platform.bus, *(a_study(org, uid) for uid in uids))

    async def all_there() -> bool:
        return len(await client.items(manager)) == len(uids)
    await eventually(all_there, "the studies never reached the worklist")

    for item in await client.items(manager):
        assert item["status"] == "received"
        claimants = [reader for reader in readers for _ in range(3)]  # each radiologist asks three times at once
        results = await asyncio.gather(*(client.call("POST", f"/api/worklist/items/{item['id']}/claim", reader)
                                         for reader in claimants))
        winners = {reader.user_id for reader, (status, _) in zip(claimants, results, strict=True) if status == 200}
        assert len(winners) == 1, results  # the winner's own repeats are renewals; everyone else is refused
        [winner] = winners
        assert all(status == 409 for reader, (status, _) in zip(claimants, results, strict=True)
                   if reader.user_id != winner), results
        status, now = await client.call("GET", f"/api/worklist/items/{item['id']}", manager)
        assert (now["status"], now["claimed_by"], now["assignee_id"]) == ("in_progress", winner, winner)
    status, changes = await client.call("GET", "/api/worklist/changes?after=0&limit=500", manager)
    claimed = {c["item_id"]: c["item"]["claimed_by"] for c in changes["changes"] if c["change"] == "claimed"}
    assert len(claimed) == len(uids)
    sequences = [c["sequence"] for c in changes["changes"]]
    assert sequences == list(range(1, len(sequences) + 1))


async def test_no_route_shows_or_touches_another_organisations_items(platform: Platform, client: Client) -> None:
    a, b = await client.organization(radiologists=1), await client.organization(radiologists=1)
    uid = a_uid()
    await announce(platform.bus, a_study(a, uid, PriorityValues.STAT))
    manager_a = a.of(RoleValues.MANAGER)[0]

    async def arrived() -> bool:
        return len(await client.items(manager_a)) == 1
    await eventually(arrived, "the study never reached organisation A's worklist")
    [item] = await client.items(manager_a)
    secrets = (item["id"], uid, item["patient_name"], item["patient_id"], str(a.id))
    reader_a = a.of(RoleValues.RADIOLOGIST)[0]
    bodies = {"assign": {"assignee_id": reader_a.user_id}, "priority": {"priority": "urgent"},
              "sla-policies": {"policies": [{"priority": "stat", "minutes": 5}]},
              "priority-rules": {"rules": [{"priority": "stat", "modality": "CT"}]},
              "availability": {"available": True}, "readers": {"available": False}}
    routes = sorted(key for key in ROUTE_ROLES if key[1].startswith("/api/worklist"))
    assert len(routes) >= 15
    for method, route in routes:
        path = route.replace("{item_id}", item["id"]).replace("{user_id}", reader_a.user_id)
        body = next((v for k, v in bodies.items() if k in route), None) if method != "GET" else None
        for member in b.members:
            if member.role not in ROUTE_ROLES[(method, route)]:
                continue
            status, reply = await client.call(method, path, member, body)
            text = "" if reply is None else str(reply)
            assert not any(secret in text for secret in secrets), (method, route, member.role, text)
            if "{" in route:
                assert status == 404, (method, route, member.role, status, reply)
            else:
                assert status in (200, 204, 422), (method, route, member.role, status, reply)
    # and A's item is as it was: B's requests changed nothing
    status, after = await client.call("GET", f"/api/worklist/items/{item['id']}", manager_a)
    assert (after["priority"], after["status"], after["assignee_id"]) == (
        item["priority"], item["status"], item["assignee_id"])
    assert (await client.call("GET", "/api/worklist/sla-policies", manager_a))[1]["policies"] == []


async def collect(bus: Bus, queue: str, bindings: list[str]) -> list[Message]:
    """Everything published on ``bindings`` from now on, into a list (a test queue of our own)."""
    seen: list[Message] = []

    async def keep(message: Message) -> None:
        seen.append(message)
    await bus.consume(queue, bindings, keep)
    return seen


def alerts_by_item(seen: list[Message]) -> dict[str, list[str]]:
    import json
    out: dict[str, list[str]] = {}
    for m in seen:
        out.setdefault(json.loads(m.body)["item_id"], []).append(m.routing_key.split(".")[2])
    return out


async def test_deadlines_survive_a_restart_and_alerts_come_once(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        amqp_url, databases = await stack.enter_async_context(distributed_servers())
        watcher = rabbitmq_test_bus(amqp_url)
        await watcher.connect()
        stack.push_async_callback(watcher.close)
        seen = await collect(watcher, "test.sla", ["worklist.sla.#"])

        async with running_platform(tmp_path, bus=rabbitmq_test_bus(amqp_url), embedded=False, database_urls=databases,
                                    worklist=FAST) as platform, aiohttp.ClientSession() as session:
            client = Client(platform, session)
            org = await client.organization(radiologists=1)
            manager = org.of(RoleValues.MANAGER)[0]
            policies = {"policies": [{"priority": "stat", "modality": "CT", "minutes": 0.05, "warning_fraction": 0.5},
                                     {"priority": "urgent", "modality": "*", "minutes": 0.2,
                                      "warning_fraction": 0.5}]}
            assert (await client.call("PUT", "/api/worklist/sla-policies", manager, policies))[0] == 200
            soon, later = a_uid(), a_uid()
            await announce(platform.bus, a_study(org, soon, PriorityValues.STAT),
                           a_study(org, later, PriorityValues.URGENT))

            async def both_there() -> bool:
                return len(await client.items(manager)) == 2
            await eventually(both_there, "the studies never reached the worklist", timeout=10)
            items = {i["study_instance_uid"]: i for i in await client.items(manager)}
        # the platform is down through the first study's warning (1.5 s) and deadline (3 s)
        await asyncio.sleep(3.5)
        assert seen == []
        async with running_platform(tmp_path, bus=rabbitmq_test_bus(amqp_url), embedded=False,
                                    database_urls=databases, worklist=FAST):
            async def all_due() -> bool:
                by_item = alerts_by_item(seen)
                return by_item.get(items[later]["id"]) == ["warning", "breached"]
            await eventually(all_due, "the second study's alerts never came", timeout=20)
            await asyncio.sleep(1)  # a few more monitor rounds: nothing may come twice
        by_item = alerts_by_item(seen)
        assert by_item == {items[soon]["id"]: ["breached"],  # passed while down: the breach, no stale warning
                           items[later]["id"]: ["warning", "breached"]}


async def test_two_worklist_replicas_raise_each_alert_once(tmp_path: Path) -> None:
    async with distributed_servers() as (amqp_url, databases), running_platform(
            tmp_path, bus=rabbitmq_test_bus(amqp_url), embedded=False, database_urls=databases,
            worklist={"monitor_seconds": 0.05}) as platform:
        watcher = rabbitmq_test_bus(amqp_url)
        await watcher.connect()
        seen = await collect(watcher, "test.sla", ["worklist.sla.#"])
        second_bus = rabbitmq_test_bus(amqp_url)
        await second_bus.connect()
        replica = build_service("worklist", platform.common, second_bus, embedded=False, settings=WorklistSettings(
            http_port=0, database_url=databases["worklist"], monitor_seconds=0.05))
        await replica.prepare()
        await replica.start()
        try:
            async with aiohttp.ClientSession() as session:
                client = Client(platform, session)
                org = await client.organization(radiologists=1)
                manager = org.of(RoleValues.MANAGER)[0]
                policies = {"policies": [{"priority": "stat", "minutes": 0.03, "warning_fraction": 0.5}]}
                assert (await client.call("PUT", "/api/worklist/sla-policies", manager, policies))[0] == 200
                studies = [a_study(org, a_uid(), PriorityValues.STAT) for _ in range(30)]
                await announce(platform.bus, *studies)

                async def all_breached() -> bool:
                    by_item = alerts_by_item(seen)
                    return len(by_item) == len(studies) and all("breached" in v for v in by_item.values())
                await eventually(all_breached, "not every study was alerted", timeout=30)
                await asyncio.sleep(1)
                by_item = alerts_by_item(seen)
                assert len(by_item) == len(studies)
                for item_id, kinds in by_item.items():
                    assert sorted(kinds) in (["breached"], ["breached", "warning"]), (item_id, kinds)
                assert sum(len(k) for k in by_item.values()) == len(seen)
        finally:
            await replica.stop()
            await second_bus.close()
            await watcher.close()
