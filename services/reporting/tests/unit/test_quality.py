from typing import Any
from uuid import uuid4

from radcommon.contracts import RoleValues

Desk = Any
ALICE, BOB, CAROL, DAVE = uuid4(), uuid4(), uuid4(), uuid4()
MANAGER, VIEWER, ADMIN = RoleValues.MANAGER, RoleValues.VIEWER, RoleValues.ADMIN


async def test_a_dispute_is_raised_answered_and_resolved(desk: Desk) -> None:
    draft = await desk.start(ALICE, uid="9.9")
    status, problem = await desk.call("POST", f"/reports/{draft['id']}/disputes", VIEWER, json={"reason": "Early."})
    assert status == 409
    final = await desk.final(ALICE)
    path = f"/reports/{final['id']}/disputes"
    assert (await desk.call("POST", path, json={"reason": "A radiologist?"}))[0] == 403
    referrer = uuid4()
    status, dispute = await desk.call("POST", path, VIEWER, user=referrer,
                                      json={"reason": "The lesion is on the right on my exam."})
    assert status == 201 and dispute["status"] == "open"
    [raised] = await desk.events("reporting.report.disputed.v1")
    assert (raised["dispute_id"], raised["raised_by"], raised["report_id"]) == (dispute["id"], str(referrer),
                                                                                 final["id"])

    answer = f"/disputes/{dispute['id']}/response"
    assert (await desk.call("POST", answer, user=BOB, json={"text": "Not mine."}))[0] == 403
    status, answered = await desk.call("POST", answer, user=ALICE, json={"text": "Re-read: it is left."})
    assert status == 200 and (answered["status"], answered["response"]) == ("answered", "Re-read: it is left.")

    resolve = f"/disputes/{dispute['id']}/resolve"
    assert (await desk.call("POST", resolve, VIEWER, json={"outcome": "upheld"}))[0] == 403
    assert (await desk.call("POST", resolve, MANAGER, json={"outcome": "maybe"}))[0] == 422
    manager = uuid4()
    status, closed = await desk.call("POST", resolve, MANAGER, user=manager,
                                     json={"outcome": "upheld", "note": "Images confirm left."})
    assert status == 200 and (closed["status"], closed["outcome"], closed["resolved_by"]) == (
        "closed", "upheld", str(manager))
    [resolved] = await desk.events("reporting.dispute.resolved.v1")
    assert (resolved["outcome"], resolved["resolved_by"], resolved["dispute_id"]) == (
        "upheld", str(manager), dispute["id"])
    status, problem = await desk.call("POST", resolve, MANAGER, json={"outcome": "resolved"})
    assert status == 409 and "decided" in problem["detail"]
    assert (await desk.call("POST", answer, user=ALICE, json={"text": "Late."}))[0] == 409

    status, listed = await desk.call("GET", path, VIEWER)
    assert [d["id"] for d in listed["disputes"]] == [dispute["id"]]
    assert (await desk.call("POST", f"/disputes/{dispute['id']}/resolve", MANAGER, org=desk.org_b,
                            json={"outcome": "resolved"}))[0] == 404
    assert (await desk.call("POST", "/disputes/not-an-id/resolve", MANAGER, json={"outcome": "resolved"}))[0] == 404


async def test_a_manager_disputes_too(desk: Desk) -> None:
    final = await desk.final(ALICE)
    status, _ = await desk.call("POST", f"/reports/{final['id']}/disputes", MANAGER, json={"reason": "Audit."})
    assert status == 201


async def test_peer_review_by_another_radiologist_once_on_a_final_report(desk: Desk) -> None:
    draft = await desk.start(ALICE, uid="9.9")
    assert (await desk.call("POST", f"/reports/{draft['id']}/peer-reviews", user=BOB, json={"score": "1"}))[0] == 409
    final = await desk.final(ALICE)
    path = f"/reports/{final['id']}/peer-reviews"
    status, problem = await desk.call("POST", path, user=ALICE, json={"score": "1"})
    assert status == 403 and "own" in problem["detail"]
    assert (await desk.call("POST", path, MANAGER, json={"score": "1"}))[0] == 403
    assert (await desk.call("POST", path, user=BOB, json={"score": "4"}))[0] == 422
    status, review = await desk.call("POST", path, user=BOB, json={"score": "2b", "comment": "Missed a nodule."})
    assert status == 201 and (review["radiologist_id"], review["reviewer_id"], review["score"]) == (
        str(ALICE), str(BOB), "2b")
    status, problem = await desk.call("POST", path, user=BOB, json={"score": "1"})
    assert status == 409 and "already" in problem["detail"]


async def test_peer_review_statistics_per_radiologist(desk: Desk) -> None:
    alice_reports = [await desk.final(ALICE, uid=f"1.{n}") for n in range(3)]
    bob_report = await desk.final(BOB, uid="2.1")
    for report, reviewer, score in [(alice_reports[0], BOB, "1"), (alice_reports[0], CAROL, "3b"),
                                    (alice_reports[1], CAROL, "2a"), (alice_reports[2], DAVE, "3a"),
                                    (bob_report, ALICE, "1")]:
        status, _ = await desk.call("POST", f"/reports/{report['id']}/peer-reviews", user=reviewer,
                                    json={"score": score})
        assert status == 201
    assert (await desk.call("GET", "/peer-reviews/stats"))[0] == 403
    status, stats = await desk.call("GET", "/peer-reviews/stats", MANAGER)
    assert status == 200
    alice, bob = stats["radiologists"]
    assert (alice["radiologist_id"], alice["reviews"], alice["significant"], alice["significant_share"]) == (
        str(ALICE), 4, 2, 0.5)
    assert alice["scores"] == {"1": 1, "2a": 1, "2b": 0, "3a": 1, "3b": 1}
    assert (bob["radiologist_id"], bob["reviews"], bob["significant_share"]) == (str(BOB), 1, 0.0)
    assert (stats["organization"]["reviews"], stats["organization"]["significant"]) == (5, 2)
    status, other = await desk.call("GET", "/peer-reviews/stats", ADMIN, org=desk.org_b)
    assert other == {"organization": {"reviews": 0, "scores": {"1": 0, "2a": 0, "2b": 0, "3a": 0, "3b": 0},
                                      "significant": 0, "significant_share": None}, "radiologists": []}
    status, none = await desk.call("GET", "/peer-reviews/stats?reviewed_to=2000-01-01", MANAGER)
    assert none["organization"]["reviews"] == 0
