from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from aiohttp.test_utils import TestClient

from radcommon.contracts import PriorityValues, ReportFinalizedV1, RoleValues
from support.worklist import ORG_A, Feed, a_radiologist, a_study, bearer, page
from worklist.service_layer.monitor import expire_claims, raise_due_alerts

Client = TestClient  # type: ignore[type-arg]
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


async def test_a_warning_then_a_breach_each_raised_once(feed: Feed, client: Client, outbox: Any) -> None:
    await feed(a_study(priority=PriorityValues.ROUTINE, occurred_at=T0))  # a day, warned at 75 %
    assert await raise_due_alerts(feed.uow(), T0 + timedelta(hours=17)) == 0
    assert await raise_due_alerts(feed.uow(), T0 + timedelta(hours=19)) == 1
    assert await raise_due_alerts(feed.uow(), T0 + timedelta(hours=20)) == 0
    assert await raise_due_alerts(feed.uow(), T0 + timedelta(hours=25)) == 1
    assert await raise_due_alerts(feed.uow(), T0 + timedelta(hours=26)) == 0
    alerts = await outbox("worklist.sla.")
    assert [key for key, _ in alerts] == ["worklist.sla.warning.v1", "worklist.sla.breached.v1"]
    assert alerts[1][1]["deadline"].startswith("2026-11-24T08:00:00")
    [item] = (await page(client))["items"]
    assert item["sla_state"] == "breached" and item["breached_at"] is not None


async def test_a_study_already_late_gets_a_breach_and_no_warning(feed: Feed, outbox: Any) -> None:
    await feed(a_study(priority=PriorityValues.STAT, occurred_at=T0))
    assert await raise_due_alerts(feed.uow(), T0 + timedelta(hours=3)) == 1
    assert [key for key, _ in await outbox("worklist.sla.")] == ["worklist.sla.breached.v1"]


async def test_a_final_report_stops_the_clock(feed: Feed, outbox: Any) -> None:
    await feed(a_study(priority=PriorityValues.STAT, occurred_at=T0),
               ReportFinalizedV1(organization_id=ORG_A, report_id=uuid4(), study_instance_uid="1.2.3",
                                 signed_by=uuid4(), version=1, occurred_at=T0 + timedelta(minutes=20)))
    assert await raise_due_alerts(feed.uow(), T0 + timedelta(hours=3)) == 0
    assert await outbox("worklist.sla.") == []


async def test_a_lapsed_claim_returns_the_item_to_the_queue(feed: Feed, client: Client) -> None:
    alice = a_radiologist()
    await feed(alice, a_study())
    [item] = (await page(client))["items"]
    response = await client.post(f"/worklist/items/{item['id']}/claim", headers=bearer(user=alice.user_id))
    assert response.status == 200
    assert await expire_claims(feed.uow(), datetime.now(UTC) + timedelta(minutes=30)) == 0
    assert await expire_claims(feed.uow(), datetime.now(UTC) + timedelta(minutes=61)) == 1
    [item] = (await page(client))["items"]
    assert item["claimed_by"] is None and item["status"] == "assigned"  # the rules gave it out again
    changes = await (await client.get("/worklist/changes", headers=bearer())).json()
    assert [c["change"] for c in changes["changes"]][-2:] == ["claimed", "claim_expired"]


async def test_turnaround_and_sla_compliance_per_radiologist(feed: Feed, client: Client) -> None:
    alice, bob = a_radiologist(name="Alice"), a_radiologist(name="Bob")
    await feed(alice, bob)
    read_in = {"1.1": (alice, 30), "1.2": (alice, 90), "1.3": (alice, 50), "1.4": (bob, 70)}  # STAT: 60 min
    for uid, (reader, minutes) in read_in.items():
        await feed(a_study(uid=uid, priority=PriorityValues.STAT, occurred_at=T0),
                   ReportFinalizedV1(organization_id=ORG_A, report_id=uuid4(), study_instance_uid=uid,
                                     signed_by=reader.user_id, version=1,
                                     occurred_at=T0 + timedelta(minutes=minutes)))
    response = await client.get("/worklist/stats?finalized_from=2026-11-23&finalized_to=2026-11-23",
                                headers=bearer(ORG_A, RoleValues.MANAGER))
    assert response.status == 200, await response.text()
    stats = await response.json()
    assert stats["organization"] == {"reports": 4, "median_minutes": 60.0, "p90_minutes": 84.0, "met_sla": 2,
                                     "sla_compliance": 0.5}
    by_name = {r["display_name"]: r for r in stats["by_radiologist"]}
    assert (by_name["Alice"]["reports"], by_name["Alice"]["median_minutes"], by_name["Alice"]["met_sla"]) == (
        3, 50.0, 2)
    assert (by_name["Bob"]["sla_compliance"], by_name["Bob"]["p90_minutes"]) == (0.0, 70.0)
    assert stats["by_priority"]["stat"]["reports"] == 4
    outside = await client.get("/worklist/stats?finalized_from=2026-11-24",
                               headers=bearer(ORG_A, RoleValues.MANAGER))
    assert (await outside.json())["organization"]["reports"] == 0
