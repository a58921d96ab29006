import asyncio
from typing import Any
from uuid import uuid4

import pytest

from radcommon.contracts import OrganizationCreatedV1, RoleValues

Desk = Any
ALICE = uuid4()
MANAGER, ADMIN, VIEWER = RoleValues.MANAGER, RoleValues.ADMIN, RoleValues.VIEWER
SPINE = {"name": "MR Spine", "modality": "MR", "body_part": "SPINE", "sections": [
    {"key": "findings", "title": "Findings", "required": True},
    {"key": "levels", "title": "Levels examined", "kind": "number", "default": 5},
    {"key": "cord_signal", "title": "Cord signal", "kind": "choice", "options": ["normal", "abnormal"],
     "default": "normal"},
]}


async def names(desk: Desk, org: Any = None, query: str = "") -> list[str]:
    status, body = await desk.call("GET", f"/report-templates{query}", org=org or desk.org_a)
    assert status == 200, body
    return [t["name"] for t in body["templates"]]


async def test_an_organisation_gets_the_default_templates_once(desk: Desk) -> None:
    first, again = await asyncio.gather(names(desk), names(desk))
    assert first == again == ["CT Head", "Chest X-ray", "General"]
    status, body = await desk.call("GET", "/report-templates?modality=ct")
    [ct_head] = body["templates"]
    assert [s["key"] for s in ct_head["sections"]] == ["clinical_history", "technique", "comparison", "contrast",
                                                       "findings", "impression"]
    assert ct_head["version"] == 1 and ct_head["created_by"] is None
    general = next(t for t in body["templates"] if t["name"] == "CT Head")
    status, _ = await desk.call("PUT", f"/report-templates/{general['id']}", MANAGER,
                                json={"name": "Head CT", "sections": general["sections"]})
    assert status == 200
    assert await names(desk) == ["Chest X-ray", "General", "Head CT"]  # renamed, not seeded again


async def test_a_new_organisation_is_seeded_when_identity_announces_it(desk: Desk) -> None:
    org = uuid4()
    await desk.feed(OrganizationCreatedV1(organization_id=org, name="St Elsewhere"))
    await desk.feed(OrganizationCreatedV1(organization_id=org, name="St Elsewhere"))  # another event, same org
    assert await names(desk, org) == ["CT Head", "Chest X-ray", "General"]


async def test_managers_write_templates_radiologists_read_them_viewers_neither(desk: Desk) -> None:
    assert (await desk.call("POST", "/report-templates", json=SPINE))[0] == 403
    assert (await desk.call("GET", "/report-templates", VIEWER))[0] == 403
    status, created = await desk.call("POST", "/report-templates", MANAGER, user=ALICE, json=SPINE)
    assert status == 201 and (created["version"], created["created_by"]) == (1, str(ALICE))
    assert created["sections"][1]["default"] == 5
    assert "MR Spine" in await names(desk)
    status, again = await desk.call("POST", "/report-templates", ADMIN, json=SPINE)
    assert status == 409 and "MR Spine" in again["detail"]
    status, _ = await desk.call("GET", f"/report-templates/{created['id']}", MANAGER, org=desk.org_b)
    assert status == 404


@pytest.mark.parametrize("sections", [
    [{"key": "a", "title": "A"}, {"key": "a", "title": "Again"}],
    [{"key": "side", "title": "Side", "kind": "choice"}],
    [{"key": "side", "title": "Side", "kind": "choice", "options": ["left", "right"], "default": "both"}],
    [{"key": "size", "title": "Size", "kind": "number", "default": "big"}],
    [{"key": "size", "title": "Size", "options": ["x"]}],
    [{"key": "Findings", "title": "Findings"}],
    [],
])
async def test_a_template_that_cannot_be_is_refused(desk: Desk, sections: list[dict[str, Any]]) -> None:
    status, problem = await desk.call("POST", "/report-templates", MANAGER, json={**SPINE, "sections": sections})
    assert status == 422, problem
    assert "MR Spine" not in await names(desk)


async def test_an_edit_is_a_new_version_and_reports_keep_theirs(desk: Desk) -> None:
    status, spine = await desk.call("POST", "/report-templates", MANAGER, json=SPINE)
    report = await desk.start(ALICE, template="MR Spine")
    revised = {**SPINE, "sections": [*SPINE["sections"], {"key": "discs", "title": "Discs"}]}
    status, v2 = await desk.call("PUT", f"/report-templates/{spine['id']}", MANAGER, json=revised)
    assert status == 200 and v2["version"] == 2 and v2["id"] == spine["id"]
    status, v1 = await desk.call("GET", f"/report-templates/{spine['id']}/versions/1")
    assert status == 200 and [s["key"] for s in v1["sections"]] == ["findings", "levels", "cord_signal"]
    assert report["template"] == {"id": spine["id"], "version": 1, "name": "MR Spine"}
    status, problem = await desk.draft(report, ALICE, 1, discs="Dehydrated L4/5.")  # not in version 1
    assert status == 422 and "discs" in problem["detail"]
    status, saved = await desk.draft(report, ALICE, 1, levels=3.5, findings="Normal.")
    assert status == 200 and saved["content"]["sections"]["levels"] == 3.5


async def test_a_deactivated_template_starts_no_report(desk: Desk) -> None:
    template_id = await desk.template_id("Chest X-ray")
    status, body = await desk.call("PUT", f"/report-templates/{template_id}/active", MANAGER, json={"active": False})
    assert status == 200 and body["active"] is False and body["version"] == 1
    assert "Chest X-ray" not in await names(desk)
    assert "Chest X-ray" in await names(desk, query="?include_inactive=true")
    item = await desk.claimed(ALICE)
    status, problem = await desk.call("POST", "/reports", user=ALICE, json={
        "worklist_item_id": str(item), "template_id": str(template_id)})
    assert status == 422 and "template" in problem["detail"]
    await desk.call("PUT", f"/report-templates/{template_id}/active", MANAGER, json={"active": True})
    assert (await desk.call("POST", "/reports", user=ALICE, json={
        "worklist_item_id": str(item), "template_id": str(template_id)}))[0] == 201
