"""The signature service on a real PostgreSQL: row locks, advisory locks and unique keys under concurrency."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from radcommon.contracts import RoleValues, SessionEndedV1, SessionEndReasonValues


def codes(verdict: dict[str, Any]) -> list[str]:
    return [problem["code"] for problem in verdict["problems"]]


async def test_sign_verify_and_tamper(desk: Any) -> None:
    reader = await desk.person(name="Dr Postgres")
    report_id = await desk.submit(version=1)
    await desk.submit(report_id, version=2)
    assert (await desk.sign(reader, report_id, version=1)).status == 409
    signed = await desk.signed(reader, report_id, version=2)
    assert (await desk.verify(signed["signature_id"], reader))["valid"] is True
    assert [key for key, _ in await desk.outbox()] == ["signature.report.signed.v1"]

    await desk.sql("UPDATE signatures SET signature = :forged", forged=bytes(64))
    assert codes(await desk.verify(signed["signature_id"], reader)) == ["signature_invalid"]
    await desk.sql("UPDATE signable_versions SET content = '{}' WHERE version = 2")
    assert codes(await desk.verify(signed["signature_id"], reader)) == ["content_changed", "signature_invalid"]
    _, trail = await desk.get(f"/signatures/audit-trail/{report_id}", reader)
    assert [e["action"] for e in trail["entries"]] == ["refused", "signed"]


async def test_two_authors_at_once_make_one_author_signature(desk: Any) -> None:
    first, second = await desk.person(), await desk.person()
    report_id = await desk.submit()
    responses = await asyncio.gather(desk.sign(first, report_id), desk.sign(second, report_id))
    assert sorted(r.status for r in responses) == [201, 409]


async def test_one_step_up_token_signs_once_even_when_raced(desk: Any) -> None:
    reader = await desk.person()
    reports = [await desk.submit(), await desk.submit()]
    token = reader.step_up()
    responses = await asyncio.gather(*(desk.sign(reader, r, step_up=token) for r in reports))
    assert sorted(r.status for r in responses) == [201, 401]


async def test_concurrent_rotations_leave_one_signing_key(desk: Any) -> None:
    operator = await desk.person(roles=(RoleValues.OPERATOR,))
    responses = await asyncio.gather(*(desk.client.post("/signatures/keys/rotate", headers=operator.headers())
                                       for _ in range(3)))
    assert [r.status for r in responses] == [201, 201, 201]
    keys = (await (await desk.client.get("/signatures/keys")).json())["keys"]
    assert sorted(k["status"] for k in keys) == ["retired", "retired", "retired", "signing"]
    reader = await desk.person()
    signed = await desk.signed(reader, await desk.submit())
    assert signed["key_id"] == next(k["kid"] for k in keys if k["status"] == "signing")


async def test_an_ended_session_is_refused(desk: Any) -> None:
    reader = await desk.person()
    await desk.feed(SessionEndedV1(organization_id=desk.ORG_A, session_id=reader.session_id, user_id=reader.user_id,
                                   reason=SessionEndReasonValues.LOGOUT,
                                   tokens_expire_by=datetime.now(UTC) + timedelta(minutes=10)))
    assert (await desk.sign(reader, await desk.submit())).status == 401
