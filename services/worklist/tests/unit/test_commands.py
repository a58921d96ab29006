from typing import Any
from uuid import UUID, uuid4

import pytest
from aiohttp.test_utils import TestClient

from radcommon.contracts import (
    PriorityValues,
    ReportAddendumAddedV1,
    ReportDraftedV1,
    ReportFinalizedV1,
    ReportSubmittedV1,
    RoleValues,
    StudyUpdatedV1,
    UserRoleChangedV1,
)
from support.worklist import ORG_A, ORG_B, Feed, a_radiologist, a_study, bearer, page

MANAGER = (RoleValues.MANAGER,)
Client = TestClient  # type: ignore[type-arg]


async def call(client: Client, method: str, path: str, *roles: RoleValues, user: UUID | None = None,
               org: UUID = ORG_A, json: Any = None) -> tuple[int, Any]:
    response = await client.request(method, path, headers=bearer(org, *roles, user=user), json=json)
    body = await response.json() if response.content_type.endswith("json") else await response.text()
    return response.status, body


async def one_item(client: Client, org: UUID = ORG_A) -> dict[str, Any]:
    [item] = (await page(client, org))["items"]
    return item  # type: ignore[no-any-return]


async def test_two_radiologists_cannot_both_claim_and_only_the_claimant_releases(feed: Feed, client: Client) -> None:
    alice, bob = a_radiologist(name="Alice"), a_radiologist(name="Bob")
    await feed(alice, bob, a_study())
    item = await one_item(client)
    assert item["status"] == "assigned"
    holder = UUID(item["assignee_id"])
    other = bob.user_id if holder == alice.user_id else alice.user_id

    status, claimed = await call(client, "POST", f"/worklist/items/{item['id']}/claim", user=holder)
    assert status == 200 and (claimed["status"], claimed["claimed_by"]) == ("in_progress", str(holder))
    status, problem = await call(client, "POST", f"/worklist/items/{item['id']}/claim", user=other)
    assert status == 409 and "another radiologist" in problem["detail"]
    status, _ = await call(client, "POST", f"/worklist/items/{item['id']}/release", user=other)
    assert status == 409
    status, released = await call(client, "POST", f"/worklist/items/{item['id']}/release", user=holder)
    # back in the queue, and the rules hand it out again at once
    assert status == 200 and released["claimed_by"] is None and released["status"] == "assigned"


async def test_a_manager_assigns_and_reassigns_and_each_assignment_is_announced(
        feed: Feed, client: Client, outbox: Any) -> None:
    alice, bob = a_radiologist(name="Alice"), a_radiologist(name="Bob")
    await feed(a_study(), alice, bob)  # no reader yet when the study came: it waits unassigned
    item = await one_item(client)
    assert (item["status"], item["assignee_id"]) == ("received", None)
    manager = uuid4()
    for reader in (alice, bob):
        status, body = await call(client, "POST", f"/worklist/items/{item['id']}/assign", *MANAGER, user=manager,
                                  json={"assignee_id": str(reader.user_id)})
        assert status == 200 and body["assignee_id"] == str(reader.user_id)
    announced = [body for _, body in await outbox("worklist.study.assigned")]
    assert [(a["assignee_id"], a["previous_assignee_id"], a["assigned_by"], a["reason"]) for a in announced] == [
        (str(alice.user_id), None, str(manager), "manual"),
        (str(bob.user_id), str(alice.user_id), str(manager), "manual")]


async def test_assignment_needs_a_known_radiologist_a_manager_and_an_open_item(feed: Feed, client: Client) -> None:
    alice = a_radiologist()
    await feed(alice, a_study())
    item = await one_item(client)
    path = f"/worklist/items/{item['id']}/assign"
    assert (await call(client, "POST", path, *MANAGER, json={"assignee_id": str(uuid4())}))[0] == 422
    assert (await call(client, "POST", path, RoleValues.RADIOLOGIST,
                       json={"assignee_id": str(alice.user_id)}))[0] == 403
    assert (await call(client, "POST", path, *MANAGER, json={"assignee": "x"}))[0] == 422
    await feed(ReportFinalizedV1(organization_id=ORG_A, report_id=uuid4(), study_instance_uid="1.2.3",
                                 signed_by=alice.user_id, version=1))
    status, problem = await call(client, "POST", path, *MANAGER, json={"assignee_id": str(alice.user_id)})
    assert status == 409 and "final" in problem["detail"]
    assert (await call(client, "POST", f"/worklist/items/{item['id']}/claim", user=alice.user_id))[0] == 409


@pytest.mark.parametrize("route", ["claim", "release", "assign"])
async def test_another_organisations_item_is_not_found(feed: Feed, client: Client, route: str) -> None:
    await feed(a_study(org=ORG_B))
    item = await one_item(client, ORG_B)
    roles = MANAGER if route == "assign" else (RoleValues.RADIOLOGIST,)
    status, _ = await call(client, "POST", f"/worklist/items/{item['id']}/{route}", *roles, org=ORG_A,
                           json={"assignee_id": str(uuid4())})
    assert status == 404
    assert (await call(client, "GET", f"/worklist/items/{item['id']}", org=ORG_A))[0] == 404
    assert (await call(client, "GET", "/worklist/items/not-a-uuid"))[0] == 404


async def test_reporting_events_drive_the_status_and_the_change_feed_records_each_step(
        feed: Feed, client: Client) -> None:
    alice = a_radiologist()
    await feed(alice, a_study())
    item = await one_item(client)
    report = uuid4()
    steps = [ReportDraftedV1(organization_id=ORG_A, report_id=report, study_instance_uid="1.2.3",
                             author_id=alice.user_id, version=1),
             ReportSubmittedV1(organization_id=ORG_A, report_id=report, study_instance_uid="1.2.3",
                               author_id=alice.user_id, version=2),
             ReportFinalizedV1(organization_id=ORG_A, report_id=report, study_instance_uid="1.2.3",
                               signed_by=alice.user_id, version=2),
             ReportAddendumAddedV1(organization_id=ORG_A, report_id=report, study_instance_uid="1.2.3",
                                   addendum_id=uuid4(), author_id=alice.user_id)]
    seen = []
    for step in steps:
        await feed(step)
        seen.append((await one_item(client))["status"])
    assert seen == ["in_progress", "preliminary", "final", "amended"]
    await feed(steps[2])  # the same event again: the inbox drops it
    status, changes = await call(client, "GET", "/worklist/changes?after=0")
    assert status == 200
    assert [c["change"] for c in changes["changes"]] == [
        "created", "report_drafted", "report_submitted", "report_finalized", "report_amended"]
    assert changes["changes"][0]["item"]["status"] == "assigned"  # arrived and assigned in one step
    assert [c["sequence"] for c in changes["changes"]] == [1, 2, 3, 4, 5]
    assert changes["last_sequence"] == 5 and changes["changes"][-1]["item"]["id"] == item["id"]
    later = (await call(client, "GET", "/worklist/changes?after=3&limit=1"))[1]
    assert [c["sequence"] for c in later["changes"]] == [4]
    assert (await call(client, "GET", "/worklist/changes?after=0", org=ORG_B))[1] == {
        "changes": [], "last_sequence": 0}


async def test_search_filters_sorts_and_pages(feed: Feed, client: Client) -> None:
    await feed(a_study(uid="1.1", priority=PriorityValues.ROUTINE, modalities=("MR",), body_parts=("KNEE",),
                       patient_name="Smith^Anna", patient_id="PA", accession="A1"),
               a_study(uid="1.2", priority=PriorityValues.STAT, modalities=("CT",), body_parts=("HEAD",),
                       patient_name="Jones^Ben", patient_id="PB", accession="A2"),
               a_study(uid="1.3", priority=PriorityValues.URGENT, modalities=("CT", "SR"), body_parts=("CHEST",),
                       patient_name="Smithers^Carl", patient_id="PC", accession="A3"))

    async def uids(query: str) -> list[str]:
        return [i["study_instance_uid"] for i in (await page(client, ORG_A, query))["items"]]

    assert await uids("?sort=priority") == ["1.2", "1.3", "1.1"]
    assert await uids("?sort=deadline") == ["1.2", "1.3", "1.1"]
    assert await uids("?sort=-deadline") == ["1.1", "1.3", "1.2"]
    assert await uids("?modality=ct&sort=received") == ["1.2", "1.3"]
    assert await uids("?body_part=HEAD") == ["1.2"]
    assert await uids("?patient=smith&sort=priority") == ["1.3", "1.1"]
    assert await uids("?patient=PB") == ["1.2"]
    assert await uids("?patient=%25") == []  # a wildcard typed by a user is a character, not a wildcard
    assert await uids("?accession=A3") == ["1.3"]
    assert await uids("?priority=stat,urgent&sort=priority") == ["1.2", "1.3"]
    assert await uids("?priority=stat&priority=routine&sort=priority") == ["1.2", "1.1"]
    assert await uids("?status=received&assignee=none&sort=priority") == ["1.2", "1.3", "1.1"]
    assert await uids("?assignee=me") == []
    assert await uids("?sla=on_time&sort=priority") == ["1.2", "1.3", "1.1"]
    assert await uids("?sla=breached") == []
    assert await uids("?received_from=2000-01-01&received_to=2000-01-02") == []
    assert len(await uids("?received_from=2000-01-01")) == 3
    paged = await page(client, ORG_A, "?sort=priority&limit=1&offset=1")
    assert paged["total"] == 3 and [i["study_instance_uid"] for i in paged["items"]] == ["1.3"]


@pytest.mark.parametrize("query", ["?status=lost", "?priority=asap", "?sort=name", "?assignee=someone",
                                   "?received_from=yesterday", "?unknown=1", "?modality=C%25T"])
async def test_a_bad_search_is_a_problem(client: Client, query: str) -> None:
    status, problem = await call(client, "GET", f"/worklist{query}")
    assert status == 422 and problem["errors"]


async def test_counts_for_the_dashboard(feed: Feed, client: Client) -> None:
    alice = a_radiologist()
    await feed(a_study(uid="1.1", priority=PriorityValues.STAT), a_study(uid="1.2", priority=PriorityValues.ROUTINE),
               alice, a_study(uid="1.3", priority=PriorityValues.ROUTINE))
    status, counts = await call(client, "GET", "/worklist/counts", user=alice.user_id)
    assert status == 200
    assert counts["by_status"]["received"] == 2 and counts["by_status"]["assigned"] == 1
    assert (counts["total_open"], counts["unassigned"], counts["mine"]) == (3, 2, 1)
    assert counts["by_priority"] == {"stat": 1, "routine": 2}
    assert (counts["warning"], counts["breached"]) == (0, 0)


async def test_sla_policies_set_the_deadline_and_priority_rules_raise_priority(feed: Feed, client: Client) -> None:
    policies = {"policies": [{"priority": "stat", "modality": "CT", "minutes": 30, "warning_fraction": 0.5},
                             {"priority": "urgent", "modality": "*", "minutes": 120}]}
    status, body = await call(client, "PUT", "/worklist/sla-policies", *MANAGER, json=policies)
    assert status == 200 and len(body["policies"]) == 2 and len(body["defaults"]) == 3
    rules = {"rules": [{"priority": "stat", "modality": "CT", "body_part": "HEAD"}]}
    assert (await call(client, "PUT", "/worklist/priority-rules", *MANAGER, json=rules))[0] == 200
    assert (await call(client, "GET", "/worklist/priority-rules", *MANAGER))[1] == {"rules": [
        {"priority": "stat", "modality": "CT", "body_part": "HEAD", "description_contains": "",
         "calling_ae_title": ""}]}
    await feed(a_study(uid="1.1", priority=PriorityValues.ROUTINE, body_parts=("HEAD",)),
               a_study(uid="1.2", priority=PriorityValues.URGENT, modalities=("MR",)))
    items = {i["study_instance_uid"]: i for i in (await page(client, ORG_A))["items"]}
    from datetime import datetime
    head, knee = items["1.1"], items["1.2"]

    def minutes(item: dict[str, Any], field: str) -> float:
        return (datetime.fromisoformat(item[field]) - datetime.fromisoformat(item["received_at"])).total_seconds() / 60

    assert head["priority"] == "stat" and round(minutes(head, "deadline")) == 30
    assert round(minutes(head, "warn_at")) == 15
    assert knee["priority"] == "urgent" and round(minutes(knee, "deadline")) == 120
    assert (await call(client, "GET", "/worklist/sla-policies", *MANAGER, org=ORG_B))[1]["policies"] == []


@pytest.mark.parametrize("body", [
    {"policies": [{"priority": "stat", "minutes": 0}]},
    {"policies": [{"priority": "stat", "minutes": 10, "warning_fraction": 1.5}]},
    {"policies": [{"priority": "stat", "minutes": 10}, {"priority": "stat", "minutes": 20}]},
    {"policies": [{"priority": "soon", "minutes": 10}]},
    {"rules": []},
])
async def test_bad_policies_are_refused_and_change_nothing(client: Client, body: dict[str, Any]) -> None:
    assert (await call(client, "PUT", "/worklist/sla-policies", *MANAGER, json=body))[0] == 422
    assert (await call(client, "GET", "/worklist/sla-policies", *MANAGER))[1]["policies"] == []


async def test_only_managers_change_the_rules(client: Client) -> None:
    for method, path in [("PUT", "/worklist/sla-policies"), ("PUT", "/worklist/priority-rules"),
                         ("GET", "/worklist/readers"), ("GET", "/worklist/stats")]:
        assert (await call(client, method, path, RoleValues.RADIOLOGIST, json={}))[0] == 403


async def test_readers_come_from_identity_and_managers_set_their_competences(feed: Feed, client: Client) -> None:
    neuro, msk = a_radiologist(name="Neuro"), a_radiologist(name="Msk")
    await feed(neuro, msk)
    status, listed = await call(client, "GET", "/worklist/readers", *MANAGER)
    assert status == 200 and [r["display_name"] for r in listed["readers"]] == ["Msk", "Neuro"]
    status, changed = await call(client, "PATCH", f"/worklist/readers/{msk.user_id}", *MANAGER,
                                 json={"modalities": ["mr"], "body_parts": ["knee", "SHOULDER"]})
    assert status == 200 and (changed["modalities"], changed["body_parts"]) == (["MR"], ["KNEE", "SHOULDER"])
    status, away = await call(client, "PUT", "/worklist/availability", user=neuro.user_id, json={"available": False})
    assert status == 200 and away["available"] is False
    await feed(a_study(uid="1.1", modalities=("CT",)))  # only Neuro reads CT, and Neuro is away
    assert (await one_item(client))["assignee_id"] is None
    await call(client, "PUT", "/worklist/availability", user=neuro.user_id, json={"available": True})
    from worklist.service_layer.monitor import assign_waiting_items
    await assign_waiting_items(feed.uow())
    assert (await one_item(client))["assignee_id"] == str(neuro.user_id)
    await feed(UserRoleChangedV1(organization_id=ORG_A, user_id=neuro.user_id, roles=[RoleValues.VIEWER],
                                 previous_roles=[RoleValues.RADIOLOGIST], changed_by=uuid4()))
    readers = (await call(client, "GET", "/worklist/readers", *MANAGER))[1]["readers"]
    assert {r["display_name"]: r["active"] for r in readers} == {"Msk": True, "Neuro": False}
    assert (await call(client, "PATCH", f"/worklist/readers/{uuid4()}", *MANAGER, json={}))[0] == 404
    for nulled in ("available", "modalities", "display_name"):
        status, problem = await call(client, "PATCH", f"/worklist/readers/{msk.user_id}", *MANAGER,
                                     json={nulled: None})
        assert status == 422, problem
    status, uncapped = await call(client, "PATCH", f"/worklist/readers/{msk.user_id}", *MANAGER,
                                  json={"max_open": None})
    assert status == 200 and uncapped["max_open"] is None


async def test_late_instances_update_the_item_and_may_raise_its_priority(feed: Feed, client: Client) -> None:
    await feed(a_study(priority=PriorityValues.ROUTINE))
    before = await one_item(client)
    await feed(a_study(StudyUpdatedV1, priority=PriorityValues.STAT, instances=9))
    after = await one_item(client)
    assert (after["priority"], after["number_of_instances"]) == ("stat", 9)
    assert after["deadline"] < before["deadline"]
    await feed(a_study(StudyUpdatedV1, priority=PriorityValues.ROUTINE, instances=10))
    assert (await one_item(client))["priority"] == "stat"
