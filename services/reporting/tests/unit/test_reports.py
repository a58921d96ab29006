import hashlib
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from radcommon.canonical import canonical_json, content_sha256
from radcommon.contracts import RoleValues, SignatureMeaningValues

Desk = Any
ALICE, BOB = uuid4(), uuid4()
VIEWER, MANAGER = RoleValues.VIEWER, RoleValues.MANAGER


async def test_a_report_lives_from_claim_to_final(desk: Desk) -> None:
    report = await desk.start(ALICE)
    assert (report["status"], report["version"], report["author_id"]) == ("draft", 1, str(ALICE))
    assert (report["accession_number"], report["patient_name"], report["template"]["name"]) == (
        "ACC1", "Doe^Jane", "CT Head")
    assert report["content"]["sections"]["contrast"] == "none"  # version 1 is the template's defaults

    status, saved = await desk.draft(report, ALICE, 1, findings="A 4 mm left frontal meningioma.")
    assert status == 200 and saved["version"] == 2
    status, problem = await desk.draft(report, ALICE, 1, findings="Written in another tab.")
    assert status == 409 and "edited elsewhere" in problem["detail"]
    status, saved = await desk.draft(saved, ALICE, 2, impression="Incidental meningioma.", contrast="intravenous")
    assert status == 200 and saved["version"] == 3

    submitted = await desk.submitted(report["id"], 3, ALICE)
    assert (submitted["status"], submitted["submitted_version"]) == ("preliminary", 3)
    [event] = await desk.events("reporting.report.submitted.v1")
    status, stored = await desk.call("GET", f"/reports/{report['id']}/versions/3")
    assert status == 200
    assert event["content"] == stored["content"]
    assert event["content_sha256"] == hashlib.sha256(canonical_json(stored["content"])).hexdigest()
    assert event["content_sha256"] == stored["content_sha256"] == content_sha256(stored["content"])
    assert (event["version"], event["accession_number"], event["addendum_id"]) == (3, "ACC1", None)

    signature = desk.signed(report["id"], 3, event["content_sha256"], ALICE)
    await desk.feed(signature)
    status, final = await desk.call("GET", f"/reports/{report['id']}", VIEWER)
    assert status == 200 and (final["status"], final["final_version"], final["shown_version"]) == ("final", 3, 3)
    assert final["signature"]["signer_name"] == "Dr Alice Reader"
    assert final["integrity"] == {"signed_digest": event["content_sha256"], "current_digest": event["content_sha256"],
                                  "intact": True}
    [finalized] = await desk.events("reporting.report.finalized.v1")
    assert (finalized["signature_id"], finalized["version"], finalized["signed_by"], finalized["report_id"]) == (
        str(signature.signature_id), 3, str(ALICE), report["id"])
    drafted = await desk.events("reporting.report.drafted.v1")
    assert [d["version"] for d in drafted] == [1, 2, 3]

    status, problem = await desk.draft(final, ALICE, 3, findings="Too late.")
    assert status == 409 and problem["detail"] == "final: add an addendum"
    status, problem = await desk.call("POST", f"/reports/{report['id']}/submit", user=ALICE, json={"version": 3})
    assert status == 409 and "addendum" in problem["detail"]
    await desk.feed(signature)  # redelivered: nothing more happens
    assert len(await desk.events("reporting.report.finalized.v1")) == 1


async def test_only_a_signature_of_the_submitted_version_and_digest_makes_it_final(desk: Desk) -> None:
    report = await desk.start(ALICE)
    submitted = await desk.submitted(report["id"], 1, ALICE)
    digest_1 = submitted["content_sha256"]
    status, edited = await desk.draft(submitted, ALICE, 1, findings="Still thinking.")  # preliminary, edited again
    assert status == 200 and (edited["status"], edited["version"], edited["submitted_version"]) == ("preliminary", 2, 1)

    await desk.feed(desk.signed(report["id"], 2, edited["content_sha256"], ALICE),  # not submitted
                    desk.signed(report["id"], 1, "0" * 64, ALICE),  # the submitted version, another digest
                    desk.signed(str(uuid4()), 1, digest_1, ALICE),  # no such report
                    desk.signed(report["id"], 1, digest_1, ALICE, org=desk.org_b))  # another organisation
    status, body = await desk.call("GET", f"/reports/{report['id']}")
    assert body["status"] == "preliminary" and body["signature"] is None
    assert await desk.events("reporting.report.finalized.v1") == []

    # a colleague's "reviewed" signature of the submitted version does not make it final: its author's does
    await desk.feed(desk.signed(report["id"], 1, digest_1, uuid4(), meaning=SignatureMeaningValues.REVIEWED))
    assert (await desk.call("GET", f"/reports/{report['id']}"))[1]["status"] == "preliminary"
    await desk.feed(desk.signed(report["id"], 1, digest_1, ALICE))
    status, body = await desk.call("GET", f"/reports/{report['id']}")
    assert (body["status"], body["final_version"], body["shown_version"], body["version"]) == ("final", 1, 1, 2)
    assert body["content_sha256"] == digest_1


async def test_addenda_are_submitted_and_signed_on_their_own(desk: Desk) -> None:
    final = await desk.final(ALICE)
    assert (await desk.call("POST", f"/reports/{final['id']}/addenda", VIEWER, json={"text": "x"}))[0] == 403
    status, addendum = await desk.call("POST", f"/reports/{final['id']}/addenda", user=BOB,
                                       json={"text": "Comparison with the 2024 CT: the meningioma is unchanged."})
    assert status == 201 and (addendum["status"], addendum["of_version"]) == ("pending", 1)
    [_, event] = await desk.events("reporting.report.submitted.v1")
    expected = {"addendum": "Comparison with the 2024 CT: the meningioma is unchanged.", "report_id": final["id"],
                "of_version": 1}
    assert (event["addendum_id"], event["content"], event["author_id"]) == (addendum["id"], expected, str(BOB))
    assert event["content_sha256"] == content_sha256(expected) == addendum["content_sha256"]

    await desk.feed(desk.signed(final["id"], 1, "f" * 64, BOB, addendum_id=addendum["id"]))  # not its digest
    assert (await desk.call("GET", f"/reports/{final['id']}"))[1]["status"] == "final"
    await desk.feed(desk.signed(final["id"], 1, event["content_sha256"], BOB, addendum_id=addendum["id"],
                                name="Dr Bob Second"))
    status, amended = await desk.call("GET", f"/reports/{final['id']}", VIEWER)
    assert amended["status"] == "amended"
    [signed] = amended["addenda"]
    assert (signed["status"], signed["signature"]["signer_name"], signed["integrity"]["intact"]) == (
        "signed", "Dr Bob Second", True)
    [added] = await desk.events("reporting.report.addendum_added.v1")
    assert (added["addendum_id"], added["author_id"], added["report_id"]) == (addendum["id"], str(BOB), final["id"])
    status, _ = await desk.call("POST", f"/reports/{final['id']}/addenda", user=ALICE, json={"text": "Another."})
    assert status == 201  # an amended report takes more


async def test_an_addendum_needs_a_final_report(desk: Desk) -> None:
    report = await desk.start(ALICE)
    status, problem = await desk.call("POST", f"/reports/{report['id']}/addenda", user=ALICE, json={"text": "x"})
    assert status == 409 and "final" in problem["detail"]


async def test_only_the_radiologist_who_claims_the_study_starts_its_report(desk: Desk) -> None:
    template_id = str(await desk.template_id())
    item = await desk.claimed(BOB)

    async def create(item_id: UUID, user: UUID = ALICE) -> tuple[int, Any]:
        return await desk.call("POST", "/reports", user=user,  # type: ignore[no-any-return]
                               json={"worklist_item_id": str(item_id), "template_id": template_id})

    status, problem = await create(item)
    assert status == 409 and "claim it first" in problem["detail"]
    unclaimed = uuid4()
    await desk.feed(desk.item_changed(unclaimed, status="assigned"))
    assert (await create(unclaimed))[0] == 409
    lapsed = uuid4()
    await desk.feed(desk.item_changed(lapsed, claimed_by=ALICE, expires_in=-timedelta(minutes=1)))
    assert (await create(lapsed))[0] == 409
    assert (await create(uuid4()))[0] == 404

    mine = uuid4()
    await desk.feed(desk.item_changed(mine, claimed_by=ALICE, sequence=50),
                    desk.item_changed(mine, status="received", sequence=49))  # an older change, delivered late
    assert (await create(mine))[0] == 201
    assert (await desk.call("POST", "/reports", MANAGER, json={
        "worklist_item_id": str(mine), "template_id": template_id}))[0] == 403
    assert len(await desk.events("reporting.report.drafted.v1")) == 1


async def test_one_open_report_a_study(desk: Desk) -> None:
    report = await desk.start(ALICE)
    item = await desk.claimed(ALICE)  # another item of the same study (uid 1.2.3)
    status, problem = await desk.call("POST", "/reports", user=ALICE, json={
        "worklist_item_id": str(item), "template_id": str(await desk.template_id())})
    assert status == 409 and report["id"] in problem["detail"]


@pytest.mark.parametrize("route", ["", "/versions", "/versions/1", "/rendering", "/disputes"])
async def test_another_organisations_report_is_not_found(desk: Desk, route: str) -> None:
    report = await desk.final(ALICE, org=desk.org_b)
    status, _ = await desk.call("GET", f"/reports/{report['id']}{route}", MANAGER)
    assert status == 404
    assert (await desk.call("GET", f"/reports/{report['id']}{route}", MANAGER, org=desk.org_b))[0] == 200


async def test_another_organisation_cannot_change_a_report(desk: Desk) -> None:
    report = await desk.start(ALICE, org=desk.org_b)
    base = f"/reports/{report['id']}"
    assert (await desk.draft(report, ALICE, 1, findings="x"))[0] == 404
    for method, route, roles, body in [
            ("POST", "/submit", (), {"version": 1}), ("POST", "/addenda", (), {"text": "x"}),
            ("POST", "/critical-findings", (), {"category": "critical", "description": "x"}),
            ("POST", "/disputes", (VIEWER,), {"reason": "x"}), ("POST", "/peer-reviews", (), {"score": "1"})]:
        status, _ = await desk.call(method, base + route, *roles, user=ALICE, json=body)
        assert status == 404, route
    status, listed = await desk.call("GET", "/reports")
    assert listed["reports"] == []


async def test_content_is_checked_against_the_template(desk: Desk) -> None:
    report = await desk.start(ALICE)
    for sections in ({"weather": "sunny"}, {"contrast": "oral"}, {"findings": 42}, {"findings": ["a"]}):
        status, problem = await desk.draft(report, ALICE, 1, **sections)
        assert status == 422, sections
    status, problem = await desk.call("PUT", f"/reports/{report['id']}/draft", user=ALICE, json={
        "content": {"sections": {}, "annotations": [{"sop_instance_uid": "1.2.3.4", "coordinates": [[1, 2], [3, 4]],
                                                     "kind": "polygon"}]}, "base_version": 1})
    assert status == 422 and "polygon" in problem["detail"]
    ellipse = {"sop_instance_uid": "1.2.3.4", "frame_number": 2, "coordinates": [[0, 5], [10, 5], [5, 3], [5, 7]],
               "kind": "ellipse", "label": "lesion"}
    status, saved = await desk.call("PUT", f"/reports/{report['id']}/draft", user=ALICE, json={
        "content": {"sections": {"findings": "See annotation."}, "annotations": [ellipse]}, "base_version": 1})
    assert status == 200 and saved["version"] == 2
    assert saved["content"]["annotations"] == [{**ellipse, "coordinates": [[0.0, 5.0], [10.0, 5.0], [5.0, 3.0],
                                                                            [5.0, 7.0]]}]
    assert saved["content"]["sections"]["technique"] is None  # left out: not filled in
    assert (await desk.call("GET", f"/reports/{report['id']}/versions"))[1]["versions"][-1]["version"] == 2


async def test_unchanged_content_makes_no_version_and_required_sections_are_checked_at_submit(desk: Desk) -> None:
    report = await desk.start(ALICE, template="General")
    status, same = await desk.draft(report, ALICE, 1)
    assert status == 200 and same["version"] == 1
    status, problem = await desk.call("POST", f"/reports/{report['id']}/submit", user=ALICE, json={"version": 1})
    assert status == 422 and "findings" in problem["detail"] and "impression" in problem["detail"]
    assert (await desk.draft(report, ALICE, 1, findings="Normal.", impression="  "))[0] == 200
    status, problem = await desk.call("POST", f"/reports/{report['id']}/submit", user=ALICE, json={"version": 2})
    assert status == 422 and "impression" in problem["detail"]
    status, problem = await desk.call("POST", f"/reports/{report['id']}/submit", user=ALICE, json={"version": 1})
    assert status == 409


async def test_only_the_author_edits_and_submits(desk: Desk) -> None:
    report = await desk.start(ALICE)
    assert (await desk.draft(report, BOB, 1, findings="Mine now."))[0] == 403
    assert (await desk.call("POST", f"/reports/{report['id']}/submit", user=BOB, json={"version": 1}))[0] == 403
    assert (await desk.call("PUT", f"/reports/{report['id']}/draft", VIEWER, json={}))[0] == 403


async def test_viewers_see_a_report_once_submitted_and_as_submitted(desk: Desk) -> None:
    report = await desk.start(ALICE)
    assert (await desk.call("GET", f"/reports/{report['id']}", VIEWER))[0] == 404
    assert (await desk.call("GET", "/reports", VIEWER))[1]["reports"] == []
    submitted = await desk.submitted(report["id"], 1, ALICE)
    await desk.draft(submitted, ALICE, 1, findings="An unsent thought.")
    status, seen = await desk.call("GET", f"/reports/{report['id']}", VIEWER)
    assert status == 200 and seen["shown_version"] == 1 and seen["content"]["sections"]["findings"] != (
        "An unsent thought.")
    assert (await desk.call("GET", f"/reports/{report['id']}/versions", VIEWER))[0] == 403
    status, listed = await desk.call("GET", "/reports?study_instance_uid=1.2.3&status=preliminary", VIEWER)
    assert [r["id"] for r in listed["reports"]] == [report["id"]]
    assert (await desk.call("GET", "/reports?status=final"))[1]["total"] == 0


async def test_a_critical_finding_is_flagged_by_the_author(desk: Desk) -> None:
    report = await desk.start(ALICE)
    finding = {"category": "critical", "description": "Acute subdural haematoma with midline shift.",
               "referring_physician_contact": "+44 20 7946 0000"}
    assert (await desk.call("POST", f"/reports/{report['id']}/critical-findings", user=BOB, json=finding))[0] == 403
    assert (await desk.call("POST", f"/reports/{report['id']}/critical-findings", user=ALICE,
                            json={**finding, "category": "bad"}))[0] == 422
    status, flagged = await desk.call("POST", f"/reports/{report['id']}/critical-findings", user=ALICE, json=finding)
    assert status == 201
    [event] = await desk.events("reporting.critical_finding.flagged.v1")
    assert (event["finding_id"], event["category"], event["referring_physician_name"], event["flagged_by"],
            event["accession_number"], event["study_instance_uid"]) == (
        flagged["id"], "critical", "Dr Who", str(ALICE), "ACC1", "1.2.3")
    status, body = await desk.call("GET", f"/reports/{report['id']}")
    assert [f["description"] for f in body["critical_findings"]] == [finding["description"]]


async def test_the_rendering_shows_each_signature_manifestation(desk: Desk) -> None:
    final = await desk.final(ALICE)
    status, text = await desk.call("GET", f"/reports/{final['id']}/rendering", VIEWER)
    assert status == 200
    assert "Electronically signed by Dr Alice Reader on 2026-03-04 05:06:07 UTC" in text
    assert "Meaning of signature: authored" in text and "FINAL" in text and "IMPRESSION" in text
    assert "Integrity verified" in text and "ALTERED" not in text

    status, addendum = await desk.call("POST", f"/reports/{final['id']}/addenda", user=BOB,
                                       json={"text": "<b>Correction</b>: left, not right."})
    [_, event] = await desk.events("reporting.report.submitted.v1")
    await desk.feed(desk.signed(final["id"], 1, event["content_sha256"], BOB, addendum_id=addendum["id"],
                                name="Dr Bob <Second>"))
    status, page = await desk.call("GET", f"/reports/{final['id']}/rendering", VIEWER,
                                   headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert status == 200 and page.startswith("<!DOCTYPE html>")
    assert "Electronically signed by Dr Bob &lt;Second&gt; on 2026-03-04 05:06:07 UTC" in page
    assert "&lt;b&gt;Correction&lt;/b&gt;" in page and "<b>Correction" not in page
    assert page.count("Meaning of signature: authored") == 2
    status, _ = await desk.call("GET", f"/reports/{final['id']}/rendering", headers={"Accept": "application/json"})
    assert status == 406


async def test_a_draft_renders_as_a_draft_without_signature(desk: Desk) -> None:
    report = await desk.start(ALICE)
    status, text = await desk.call("GET", f"/reports/{report['id']}/rendering", headers={"Accept": "text/plain"})
    assert status == 200 and "DRAFT" in text and "signed by" not in text and "Integrity" not in text


async def test_content_changed_behind_the_service_shows_as_altered(desk: Desk) -> None:
    final = await desk.final(ALICE)
    tampered = {**final["content"], "sections": {**final["content"]["sections"], "impression": "Nothing at all."}}
    async with desk.db.engine.begin() as connection:
        await connection.execute(sa.text("UPDATE report_versions SET content = :content WHERE report_id = :id "
                                         "AND version = 1"), {"content": canonical_json(tampered).decode(),
                                                              "id": UUID(final["id"]).hex})
    status, body = await desk.call("GET", f"/reports/{final['id']}")
    assert body["content"]["sections"]["impression"] == "Nothing at all."  # the update did land
    assert body["integrity"] == {"signed_digest": final["content_sha256"], "current_digest": content_sha256(tampered),
                                 "intact": False}
    status, text = await desk.call("GET", f"/reports/{final['id']}/rendering")
    assert status == 200 and "ALTERED since signing" in text and "Integrity verified" not in text
