import base64
from typing import Any
from uuid import uuid4

import pytest

from radcommon.canonical import content_sha256


def codes(verdict: dict[str, Any]) -> list[str]:
    return [problem["code"] for problem in verdict["problems"]]


@pytest.mark.parametrize(("statement", "expected"), [
    ("UPDATE signable_versions SET content = '{\"impression\":\"Pneumothorax.\"}'", ["content_changed"]),
    ("UPDATE signatures SET signer_name = 'Dr Somebody Else'", ["manifest_changed"]),
    ("UPDATE signatures SET meaning = 'approved'", ["manifest_changed"]),
    ("UPDATE signatures SET signed_at = '2001-01-01 00:00:00.000000'", ["manifest_changed"]),
    ("UPDATE signatures SET content_sha256 = '" + "0" * 64 + "'", ["content_changed", "manifest_changed"]),
    ("UPDATE signatures SET signature = :forged", ["signature_invalid"]),
    ("UPDATE signatures SET signature = X'0102'", ["signature_malformed"]),
    ("UPDATE signatures SET manifest = replace(manifest, 'Dr Jane Reader', 'Dr Somebody Else'), "
     "signer_name = 'Dr Somebody Else'", ["signature_invalid"]),
])
async def test_a_row_changed_behind_the_service_fails_verification_saying_why(desk: Any, statement: str,
                                                                               expected: list[str]) -> None:
    reader = await desk.person(name="Dr Jane Reader")
    signed = await desk.signed(reader, await desk.submit())
    assert (await desk.verify(signed["signature_id"], reader))["valid"] is True

    await desk.sql(statement, **({"forged": bytes(64)} if ":forged" in statement else {}))

    verdict = await desk.verify(signed["signature_id"], reader)
    assert verdict["valid"] is False
    assert codes(verdict) == expected
    assert all(problem["detail"] for problem in verdict["problems"])


async def test_the_manifest_problem_names_the_changed_member(desk: Any) -> None:
    reader = await desk.person()
    signed = await desk.signed(reader, await desk.submit())
    await desk.sql("UPDATE signatures SET signer_name = 'Mallory'")
    [problem] = (await desk.verify(signed["signature_id"], reader))["problems"]
    assert "signer_name" in problem["detail"]
    assert "meaning" not in problem["detail"]


async def test_another_organisation_cannot_see_or_verify_a_signature(desk: Any) -> None:
    reader, foreigner = await desk.person(), await desk.person(org=desk.ORG_B)
    signed = await desk.signed(reader, await desk.submit())
    for path in (f"/signatures/{signed['signature_id']}", f"/signatures/verify/{signed['signature_id']}"):
        status, _ = await desk.get(path, foreigner)
        assert status == 404
    status, listed = await desk.get(f"/signatures?report_id={signed['report_id']}", foreigner)
    assert (status, listed) == (200, {"signatures": []})
    assert (await desk.get("/signatures/verify/not-a-uuid", reader))[0] == 404


async def test_a_signature_document_validates_and_a_forged_one_does_not(desk: Any) -> None:
    reader = await desk.person()
    content = {"impression": "Normal."}
    signed = await desk.signed(reader, await desk.submit(content=content))
    document = {"manifest": signed["manifest"], "signature": signed["signature"], "key_id": signed["key_id"]}

    async def validate(**changes: Any) -> dict[str, Any]:
        response = await desk.client.post("/signatures/validate", headers=reader.headers(),
                                          json={**document, **changes})
        assert response.status == 200, await response.text()
        return await response.json()  # type: ignore[no-any-return]

    assert (await validate())["valid"] is True
    assert (await validate(content=content))["valid"] is True
    assert codes(await validate(content={"impression": "Abnormal."})) == ["content_changed"]
    assert codes(await validate(manifest={**signed["manifest"], "signer_name": "Dr Forger"})) == ["signature_invalid"]
    assert codes(await validate(manifest={**signed["manifest"], "extra": 1})) == ["manifest_malformed",
                                                                                  "signature_invalid"]
    assert codes(await validate(signature=base64.b64encode(bytes(64)).decode())) == ["signature_invalid"]
    assert codes(await validate(signature="%%%")) == ["signature_malformed"]
    assert codes(await validate(key_id="unknownkey")) == ["key_mismatch", "key_unknown"]


async def test_validation_answers_from_the_document_only(desk: Any) -> None:
    reader, foreigner = await desk.person(), await desk.person(org=desk.ORG_B)
    signed = await desk.signed(reader, await desk.submit())
    response = await desk.client.post("/signatures/validate", headers=foreigner.headers(), json={
        "manifest": signed["manifest"], "signature": signed["signature"], "key_id": signed["key_id"]})
    verdict = await response.json()
    assert verdict["valid"] is True  # the public key ring checks any document ...
    assert set(verdict["signature"]) == {"manifest", "signature", "key_id"}  # ... and returns only what came in
    assert verdict["signature"]["manifest"] == signed["manifest"]


async def test_the_content_digest_is_checked_when_the_event_arrives(desk: Any) -> None:
    from radcommon.messaging import PermanentFailure

    with pytest.raises(PermanentFailure, match="does not hash"):
        await desk.submit(digest=content_sha256({"something": "else"}))
    report_id = await desk.submit()
    with pytest.raises(PermanentFailure, match="other content"):
        await desk.submit(report_id, content={"impression": "changed after submission"})
    await desk.submit(report_id)  # the same version again (another event id): nothing changes
    reader = await desk.person()
    assert (await desk.sign(reader, report_id)).status == 201


async def test_a_submitted_event_without_content_is_dead_lettered(desk: Any) -> None:
    from radcommon.messaging import PermanentFailure

    event = desk.submitted(uuid4()).model_copy(update={"content": None, "content_sha256": None})
    with pytest.raises(PermanentFailure, match="without its content"):
        await desk.feed(event)
