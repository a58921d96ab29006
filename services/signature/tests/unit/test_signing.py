import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from radcommon.canonical import canonical_json, content_sha256
from radcommon.contracts import RoleValues, SessionEndedV1, SessionEndReasonValues


async def test_a_signature_covers_the_exact_version_and_is_announced(desk: Any) -> None:
    reader = await desk.person(name="Dr Jane Reader")
    content = {"impression": "No acute process.", "findings": "Clear lungs.", "measurements": [1.5, 2]}
    report_id = await desk.submit(content=content)

    signature = await desk.signed(reader, report_id)

    manifest = signature["manifest"]
    assert manifest == {
        "signature_id": signature["signature_id"], "organization_id": str(desk.ORG_A), "report_id": str(report_id),
        "version": 1, "addendum_id": None, "content_sha256": content_sha256(content),
        "signer_id": str(reader.user_id), "signer_name": "Dr Jane Reader", "meaning": "authored",
        "signed_at": signature["signed_at"], "key_id": signature["key_id"], "algorithm": "Ed25519"}
    assert signature["signed_at"].endswith("Z")
    assert signature["manifestation"]["printed_name"] == "Dr Jane Reader"
    assert signature["manifestation"]["text"].startswith("Authored and electronically signed by Dr Jane Reader on ")
    assert signature["accession_number"] == "ACC1"
    # Anyone with the public key ring can check it offline.
    keys = await (await desk.client.get("/signatures/keys")).json()
    [key] = [k for k in keys["keys"] if k["kid"] == signature["key_id"]]
    Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"])).verify(
        base64.b64decode(signature["signature"]), canonical_json(manifest))

    [(routing_key, event)] = [e for e in await desk.outbox() if e[0].startswith("signature.")]
    assert routing_key == "signature.report.signed.v1"
    assert (event["signature_id"], event["report_id"], event["version"], event["content_sha256"],
            event["signer_id"], event["signer_name"], event["meaning"], event["key_id"]) == (
        signature["signature_id"], str(report_id), 1, content_sha256(content), str(reader.user_id),
        "Dr Jane Reader", "authored", signature["key_id"])
    assert (await desk.verify(signature["signature_id"], reader))["valid"] is True


async def test_the_signature_can_be_read_back_with_its_manifestation(desk: Any) -> None:
    reader = await desk.person()
    signed = await desk.signed(reader, await desk.submit())
    status, document = await desk.get(f"/signatures/{signed['signature_id']}", reader)
    assert status == 200
    assert document == signed
    status, listed = await desk.get(f"/signatures?report_id={signed['report_id']}", reader)
    assert [s["signature_id"] for s in listed["signatures"]] == [signed["signature_id"]]


async def test_a_step_up_token_signs_once(desk: Any) -> None:
    reader = await desk.person()
    report_id = await desk.submit()
    token = reader.step_up()
    assert (await desk.sign(reader, report_id, meaning="authored", step_up=token)).status == 201

    again = await desk.sign(reader, report_id, meaning="approved", step_up=token)

    assert again.status == 401
    assert again.content_type == "application/problem+json"
    assert (await again.json())["code"] == "step_up_reused"
    assert 'error="insufficient_user_authentication"' in again.headers["WWW-Authenticate"]
    assert (await desk.sign(reader, report_id, meaning="approved")).status == 201  # a fresh one works


@pytest.mark.parametrize(("make_token", "status", "code"), [
    (lambda person: None, 401, "step_up_missing"),
    (lambda person: person.step_up(lifetime=timedelta(minutes=-1)), 401, "step_up_expired"),
    (lambda person: person.access(), 401, "step_up_bad_type"),
    (lambda person: person.step_up(purpose="export"), 401, "step_up_wrong_purpose"),
    (lambda person: "not-a-token", 401, "step_up_malformed"),
])
async def test_a_bad_step_up_token_is_refused(desk: Any, make_token: Any, status: int, code: str) -> None:
    reader = await desk.person()
    report_id = await desk.submit()
    response = await desk.sign(reader, report_id, step_up=make_token(reader))
    assert response.status == status
    assert (await response.json())["code"] == code
    assert [e for e in await desk.outbox() if e[0].startswith("signature.")] == []


async def test_another_users_step_up_token_is_forbidden(desk: Any) -> None:
    reader, colleague = await desk.person(), await desk.person(name="Dr Other")
    response = await desk.sign(reader, await desk.submit(), step_up=colleague.step_up())
    assert response.status == 403
    assert (await response.json())["code"] == "step_up_other_user"


async def test_a_step_up_token_from_another_organisation_is_forbidden(desk: Any) -> None:
    reader = await desk.person()
    token = replace(reader, organization_id=desk.ORG_B).step_up()  # the same user id, another organisation
    response = await desk.sign(reader, await desk.submit(), step_up=token)
    assert response.status == 403
    assert (await response.json())["code"] == "step_up_other_organization"


async def test_a_step_up_token_of_an_ended_session_is_refused(desk: Any) -> None:
    reader = await desk.person()
    report_id = await desk.submit()
    token = reader.step_up()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sid"] == str(reader.session_id)
    await desk.feed(SessionEndedV1(organization_id=desk.ORG_A, session_id=reader.session_id, user_id=reader.user_id,
                                   reason=SessionEndReasonValues.LOGOUT,
                                   tokens_expire_by=datetime.now(UTC) + timedelta(minutes=10)))
    other_session = replace(reader, session_id=uuid4())  # the access token of another, live, session
    response = await desk.client.post("/signatures/sign", headers=other_session.headers(token), json={
        "report_id": str(report_id), "version": 1, "meaning": "authored"})
    assert (response.status, (await response.json())["code"]) == (401, "step_up_revoked")


async def test_another_organisations_report_is_not_found(desk: Any) -> None:
    reader = await desk.person(org=desk.ORG_A)
    theirs = await desk.submit(org=desk.ORG_B)
    response = await desk.sign(reader, theirs)
    assert response.status == 404
    status, _ = await desk.get(f"/signatures/audit-trail/{theirs}", reader)
    assert status == 404


@pytest.mark.parametrize("role", [RoleValues.MANAGER, RoleValues.ADMIN, RoleValues.VIEWER, RoleValues.OPERATOR])
async def test_only_radiologists_sign(desk: Any, role: RoleValues) -> None:
    someone = await desk.person(roles=(role,))
    response = await desk.sign(someone, await desk.submit())
    assert response.status == 403


async def test_only_the_newest_version_is_signed(desk: Any) -> None:
    reader = await desk.person()
    report_id = await desk.submit(version=1)
    await desk.submit(report_id, version=2)

    older = await desk.sign(reader, report_id, version=1)
    assert older.status == 409
    assert (await older.json())["code"] == "not_newest_version"
    assert (await desk.sign(reader, report_id, version=3)).status == 404
    assert (await desk.signed(reader, report_id, version=2))["version"] == 2


async def test_a_late_older_version_does_not_supersede_a_newer_one(desk: Any) -> None:
    reader = await desk.person()
    report_id = await desk.submit(version=2)
    await desk.submit(report_id, version=1)
    assert (await desk.sign(reader, report_id, version=1)).status == 409
    assert (await desk.sign(reader, report_id, version=2)).status == 201


async def test_one_author_signature_per_version_but_others_may_review(desk: Any) -> None:
    author, reviewer, third = await desk.person(), await desk.person(name="Dr Second"), await desk.person()
    report_id = await desk.submit()
    await desk.signed(author, report_id, meaning="authored")

    again = await desk.sign(third, report_id, meaning="authored")
    assert again.status == 409
    assert (await again.json())["code"] == "already_signed"
    review = await desk.signed(reviewer, report_id, meaning="reviewed")
    assert review["manifestation"]["text"].startswith("Reviewed and electronically signed by Dr Second")
    assert (await desk.sign(reviewer, report_id, meaning="reviewed")).status == 409


async def test_an_addendum_is_signed_on_its_own(desk: Any) -> None:
    reader = await desk.person()
    report_id = await desk.submit(version=3)
    addendum_id = uuid4()
    await desk.submit(report_id, version=1, addendum_id=addendum_id, content={"addendum": "Also a rib fracture."})
    await desk.signed(reader, report_id, version=3)

    signed = await desk.signed(reader, report_id, version=1, addendum_id=str(addendum_id))

    assert signed["manifest"]["addendum_id"] == str(addendum_id)
    assert signed["content_sha256"] == content_sha256({"addendum": "Also a rib fracture."})
    assert (await desk.verify(signed["signature_id"], reader))["valid"] is True


async def test_a_signer_identity_has_not_announced_yet_signs_with_the_email_of_their_token(desk: Any) -> None:
    known = await desk.person()
    stranger = replace(known, user_id=uuid4())
    signed = await desk.signed(stranger, await desk.submit())
    assert signed["signer_name"] == signed["manifest"]["signer_name"] == "user@telerad.test"


@pytest.mark.parametrize("body", [{"report_id": "nope", "version": 1, "meaning": "authored"},
                                  {"version": 1, "meaning": "authored"},
                                  {"report_id": str(uuid4()), "version": 0, "meaning": "authored"},
                                  {"report_id": str(uuid4()), "version": 1, "meaning": "liked"}])
async def test_a_malformed_request_is_a_problem(desk: Any, body: dict[str, Any]) -> None:
    reader = await desk.person()
    response = await desk.client.post("/signatures/sign", headers=reader.headers(reader.step_up()), json=body)
    assert response.status == 422
    assert response.content_type == "application/problem+json"


async def test_the_openapi_document_describes_signing(desk: Any) -> None:
    from openapi_spec_validator import validate

    document = await (await desk.client.get("/openapi.json")).json()
    validate(document)
    sign = document["paths"]["/signatures/sign"]["post"]
    assert "X-Step-Up-Token" in sign["description"]
    assert {"201", "401", "403", "404", "409"} <= set(sign["responses"])
    assert "security" not in document["paths"]["/signatures/keys"]["get"]
    assert "security" in document["paths"]["/signatures/keys/rotate"]["post"]
