"""Reporting on its own PostgreSQL database: the life of a report, and what must hold under concurrency."""

import asyncio
import json
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa

from radcommon.canonical import content_sha256

Desk = Any
ALICE, BOB = uuid4(), uuid4()


async def test_a_report_is_written_signed_amended_and_checked_on_postgres(desk: Desk) -> None:
    report = await desk.start(ALICE)
    status, saved = await desk.draft(report, ALICE, 1, findings="Small meningioma.", contrast="intravenous")
    assert status == 200 and saved["version"] == 2
    submitted = await desk.submitted(report["id"], 2, ALICE)
    await desk.feed(desk.signed(report["id"], 2, submitted["content_sha256"], ALICE))
    status, addendum = await desk.call("POST", f"/reports/{report['id']}/addenda", user=BOB, json={"text": "Stable."})
    assert status == 201
    [_, event] = await desk.events("reporting.report.submitted.v1")
    await desk.feed(desk.signed(report["id"], 2, event["content_sha256"], BOB, addendum_id=addendum["id"]))
    status, amended = await desk.call("GET", f"/reports/{report['id']}")
    assert (amended["status"], amended["final_version"], amended["integrity"]["intact"]) == ("amended", 2, True)
    assert [e for e, _ in await desk.outbox("reporting.report.")] == [
        "reporting.report.drafted.v1", "reporting.report.drafted.v1", "reporting.report.submitted.v1",
        "reporting.report.finalized.v1", "reporting.report.submitted.v1", "reporting.report.addendum_added.v1"]

    tampered = {**amended["content"], "sections": {**amended["content"]["sections"], "findings": "Nothing."}}
    async with desk.db.engine.begin() as connection:
        await connection.execute(sa.text("UPDATE report_versions SET content = CAST(:content AS json) "
                                         "WHERE report_id = :id AND version = 2"),
                                 {"content": json.dumps(tampered), "id": UUID(report["id"])})
    status, body = await desk.call("GET", f"/reports/{report['id']}")
    assert body["integrity"]["intact"] is False and body["integrity"]["current_digest"] == content_sha256(tampered)


async def test_concurrent_autosaves_of_one_version_make_one_new_version(desk: Desk) -> None:
    report = await desk.start(ALICE)
    results = await asyncio.gather(*(desk.draft(report, ALICE, 1, findings=f"Tab {n}.") for n in range(6)))
    assert sorted(status for status, _ in results) == [200] + [409] * 5
    status, listed = await desk.call("GET", f"/reports/{report['id']}/versions")
    assert status == 200 and [v["version"] for v in listed["versions"]] == [1, 2]


async def test_a_study_gets_one_open_report_even_when_started_twice_at_once(desk: Desk) -> None:
    template_id = str(await desk.template_id())
    items = [await desk.claimed(ALICE) for _ in range(4)]  # four items of the same study, say re-sent
    results = await asyncio.gather(*(desk.call("POST", "/reports", user=ALICE, json={
        "worklist_item_id": str(item), "template_id": template_id}) for item in items))
    assert sorted(status for status, _ in results) == [201, 409, 409, 409]


async def test_templates_are_seeded_once_when_the_first_lists_race(desk: Desk) -> None:
    listings = await asyncio.gather(*(desk.call("GET", "/report-templates") for _ in range(5)))
    assert all(status == 200 for status, _ in listings)
    status, body = await desk.call("GET", "/report-templates")
    assert status == 200 and [t["name"] for t in body["templates"]] == ["CT Head", "Chest X-ray", "General"]


async def test_a_reviewer_scores_a_report_once_even_twice_at_once(desk: Desk) -> None:
    final = await desk.final(ALICE)
    results = await asyncio.gather(*(desk.call("POST", f"/reports/{final['id']}/peer-reviews", user=BOB,
                                               json={"score": "1"}) for _ in range(3)))
    assert sorted(status for status, _ in results) == [201, 409, 409]
