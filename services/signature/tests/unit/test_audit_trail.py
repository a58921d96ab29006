from typing import Any
from uuid import uuid4

from radcommon.contracts import RoleValues


async def test_the_audit_trail_tells_every_signing_event_in_order(desk: Any) -> None:
    author = await desk.person(name="Dr Author")
    reviewer = await desk.person(name="Dr Reviewer")
    operator = await desk.person(org=uuid4(), roles=(RoleValues.OPERATOR,), name="Olga Operator")
    report_id = await desk.submit(version=1)
    await desk.submit(report_id, version=2)

    assert (await desk.sign(author, report_id, version=1)).status == 409
    assert (await desk.sign(author, report_id, version=2, step_up=None)).status == 401
    signed = await desk.signed(author, report_id, version=2)
    assert (await desk.sign(reviewer, report_id, version=2, meaning="authored")).status == 409
    reviewed = await desk.signed(reviewer, report_id, version=2, meaning="reviewed")
    revoke = await desk.client.post(f"/signatures/keys/{signed['key_id']}/revoke", headers=operator.headers(),
                                    json={"reason": "compromised"})
    assert revoke.status == 200

    status, trail = await desk.get(f"/signatures/audit-trail/{report_id}", reviewer)

    assert status == 200
    steps = [(e["action"], e["actor"]["name"], e.get("version"), e.get("meaning"), e.get("reason"))
             for e in trail["entries"]]
    assert steps == [
        ("refused", "Dr Author", 1, "authored", "not_newest_version"),
        ("refused", "Dr Author", 2, "authored", "step_up_missing"),
        ("signed", "Dr Author", 2, "authored", None),
        ("refused", "Dr Reviewer", 2, "authored", "already_signed"),
        ("signed", "Dr Reviewer", 2, "reviewed", None),
        ("key_revoked", "key custodian outside your organisation", None, None, "compromised"),
    ]
    first_signing = trail["entries"][2]
    assert first_signing["actor"]["id"] == str(author.user_id)
    assert first_signing["signature_id"] == signed["signature_id"]
    assert first_signing["content_sha256"] == signed["content_sha256"]
    assert first_signing["key_id"] == signed["key_id"]
    assert trail["entries"][-1]["signature_ids"] == [signed["signature_id"], reviewed["signature_id"]]
    moments = [e["occurred_at"] for e in trail["entries"]]
    assert moments == sorted(moments)


async def test_a_key_change_by_someone_of_the_organisation_names_them(desk: Any) -> None:
    reader = await desk.person()
    admin = await desk.person(roles=(RoleValues.ADMIN,), name="Ada Admin")
    report_id = await desk.submit()
    await desk.signed(reader, report_id)
    assert (await desk.client.post("/signatures/keys/rotate", headers=admin.headers())).status == 201
    _, trail = await desk.get(f"/signatures/audit-trail/{report_id}", reader)
    assert [(e["action"], e["actor"]) for e in trail["entries"]][-1] == (
        "key_retired", {"id": str(admin.user_id), "name": "Ada Admin"})


async def test_the_audit_trail_is_the_organisations_own(desk: Any) -> None:
    reader, foreigner = await desk.person(), await desk.person(org=desk.ORG_B)
    report_id = await desk.submit()
    await desk.signed(reader, report_id)
    assert (await desk.get(f"/signatures/audit-trail/{report_id}", foreigner))[0] == 404
    # The same report id in another organisation is another report, with its own (empty) trail.
    await desk.submit(report_id, org=desk.ORG_B)
    status, trail = await desk.get(f"/signatures/audit-trail/{report_id}", foreigner)
    assert (status, trail["entries"]) == (200, [])
