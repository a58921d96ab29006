"""A radiologist's whole read, through the gateway, embedded and on PostgreSQL/RabbitMQ (issue 6):
a modality pushes a study; it is claimed, reported from a template, submitted, signed after a step-up,
and final on the worklist; an edit after signing is refused and an addendum is signed on its own;
signing needs a fresh single-use step-up of a radiologist of the organisation; key rotation keeps old
signatures valid; a row changed behind a service's back shows in verify and in the report.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pyotp
import pytest
from sqlalchemy import Uuid, bindparam, text

from radcommon.contracts import RoleValues
from signature.adapters.repository import REPORT_ITSELF
from support.platform import KINDS, identity_signing_key, platform_of, sign_in
from support.studies import storescu, write_ct_study
from telerad.platform import Platform

pytestmark = pytest.mark.integration
PW = "a long password for signing tests"
AE = "READ-SIGN-CT"


@pytest.fixture(params=KINDS)
async def platform(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    async with platform_of(request.param, tmp_path) as running:
        yield running


@dataclass
class User:
    email: str
    role: RoleValues
    token: str = ""
    totp: str = ""
    last_step: int = field(default=0)


class Api:
    def __init__(self, platform: Platform, session: aiohttp.ClientSession) -> None:
        self.platform, self.session = platform, session

    async def call(self, method: str, path: str, user: User | None = None, json: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = dict(headers or {})
        if user is not None:
            headers["Authorization"] = f"Bearer {user.token}"
        async with self.session.request(method, self.platform.gateway_url + path, json=json,
                                        headers=headers) as response:
            body = await response.text()
            if "json" in response.content_type:
                return response.status, await response.json(content_type=None)
            return response.status, body

    async def organization(self, *roles: RoleValues) -> list[User]:
        slug = f"rs-{uuid.uuid4().hex[:10]}"
        users = [User(f"{role.value}.{n}@{slug}.test", role) for n, role in enumerate(roles)]
        assert await self.platform.services["identity"].create_organization(  # type: ignore[attr-defined]
            organization_id=uuid.uuid4(), name=f"Centre {slug}", slug=slug,
            users=[(u.email, f"Dr {u.role.value.title()} {n}", [u.role]) for n, u in enumerate(users)], password=PW)
        for user in users:
            user.token = (await sign_in(self.platform.gateway_url, user.email, PW))["access_token"]
        return users

    async def enrol(self, user: User) -> None:
        status, enrolment = await self.call("POST", "/api/auth/2fa/enrol", user, {})
        assert status == 200, enrolment
        user.totp = enrolment["secret"]
        user.last_step = int(time.time() // 30)
        status, body = await self.call("POST", "/api/auth/2fa/verify", user, {"code": pyotp.TOTP(user.totp).now()})
        assert status == 200, body

    async def step_up(self, user: User) -> str:
        """A step-up token: password and a TOTP code of a step not used before (a used code is refused)."""
        step = max(int(time.time() // 30) + 1, user.last_step + 1)
        while step > int(time.time() // 30) + 1:  # only one step ahead is accepted: wait for the clock
            await asyncio.sleep(1)
        user.last_step = step
        status, body = await self.call("POST", "/api/auth/step-up", user,
                                       {"password": PW, "totp": pyotp.TOTP(user.totp).at(step * 30)})
        assert status == 200, body
        return body["step_up_token"]  # type: ignore[no-any-return]

    async def sign(self, user: User, step_up: str, report_id: str, version: int, addendum_id: str | None = None,
                   meaning: str = "authored") -> tuple[int, Any]:
        return await self.call("POST", "/api/signatures/sign", user,
                               {"report_id": report_id, "version": version, "addendum_id": addendum_id,
                                "meaning": meaning}, headers={"X-Step-Up-Token": step_up})


async def eventually(check: Callable[[], Awaitable[Any]], failure: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(failure)


async def expired_copy(platform: Platform, token: str) -> str:
    """The same step-up token, expired a minute ago, fresh jti, signed with identity's own key."""
    kid, key = await identity_signing_key(platform)
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())
    claims.update(iat=now - 300, nbf=now - 300, exp=now - 60, jti=str(uuid.uuid4()))
    return jwt.encode(claims, key, algorithm="EdDSA",  # type: ignore[arg-type]
                      headers={"kid": kid, "typ": jwt.get_unverified_header(token)["typ"]})


async def execute(platform: Platform, service: str, statement: str, **params: Any) -> int:
    """SQL straight into a service's own database, as someone with database access but no API would."""
    db = platform.services[service].db
    assert db is not None
    typed = [bindparam(k, type_=Uuid) for k, v in params.items() if isinstance(v, uuid.UUID)]
    async with db.session() as session:
        result = await session.execute(text(statement).bindparams(*typed), params)
        await session.commit()
        return int(result.rowcount)  # type: ignore[attr-defined]


async def test_a_full_read_is_signed_final_and_provable(platform: Platform, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        api = Api(platform, session)
        admin, manager, author, colleague = await api.organization(
            RoleValues.ADMIN, RoleValues.MANAGER, RoleValues.RADIOLOGIST, RoleValues.RADIOLOGIST)
        [outsider] = await api.organization(RoleValues.RADIOLOGIST)
        for user in (author, colleague, outsider):
            await api.enrol(user)
        assert (await api.call("POST", "/api/modalities", admin, {"ae_title": AE, "host": "127.0.0.1"}))[0] == 201
        status, _ = await api.call("PUT", "/api/worklist/availability", colleague, {"available": False})
        assert status == 200

        # the modality pushes a CT study; the rules give it to the one available radiologist
        study = write_ct_study(tmp_path / "ct", series=1, instances_per_series=3, accession_number="SIGN1")
        await storescu(platform.dicom_port, *study.files, calling_ae_title=AE)

        async def item_of_author() -> dict[str, Any] | None:
            _, page = await api.call("GET", "/api/worklist", author)
            return page["items"][0] if page["items"] and page["items"][0]["assignee_id"] else None
        item = await eventually(item_of_author, "the study never reached the worklist")
        status, claimed = await api.call("POST", f"/api/worklist/items/{item['id']}/claim", author)
        assert status == 200 and claimed["status"] == "in_progress", claimed

        # a report from the organisation's CT template (the claim reaches reporting as an event)
        _, templates = await api.call("GET", "/api/report-templates", author)
        template = next(t for t in templates["templates"] if t["modality"] == "CT")

        async def created() -> dict[str, Any] | None:
            status, body = await api.call("POST", "/api/reports", author,
                                          {"worklist_item_id": item["id"], "template_id": template["id"]})
            assert status in (201, 409), body
            return body if status == 201 else None
        report = await eventually(created, "the report could never be started")
        sections = {s["key"]: s["default"] for s in template["sections"]}
        sections.update({"findings": "No acute intracranial abnormality.", "impression": "Normal CT head."})
        status, drafted = await api.call("PUT", f"/api/reports/{report['id']}/draft", author,
                                         {"content": {"sections": sections}, "base_version": report["version"]})
        assert status == 200, drafted
        version = drafted["version"]
        status, submitted = await api.call("POST", f"/api/reports/{report['id']}/submit", author, {"version": version})
        assert status == 200 and submitted["status"] == "preliminary", submitted

        async def worklist_status(wanted: str) -> bool:
            _, now = await api.call("GET", f"/api/worklist/items/{item['id']}", author)
            return bool(now["status"] == wanted)
        await eventually(lambda: worklist_status("preliminary"), "the worklist never saw the submission")
        await asyncio.sleep(1)  # signature follows the same event on its own queue

        # who cannot sign: a manager, a radiologist of another organisation, a reused step-up token
        status, _ = await api.call("POST", "/api/signatures/sign", manager, {
            "report_id": report["id"], "version": version, "meaning": "authored"}, headers={"X-Step-Up-Token": "x"})
        assert status == 403
        status, problem = await api.sign(outsider, await api.step_up(outsider), report["id"], version)
        assert status == 404, problem
        status, problem = await api.sign(author, "not-a-token", report["id"], version)
        assert status == 401, problem

        step_up = await api.step_up(author)
        status, signature = await api.sign(author, step_up, report["id"], version)
        assert status == 201, signature
        status, problem = await api.sign(author, step_up, report["id"], version, meaning="approved")
        assert status == 401, problem  # one step-up, one signature
        status, problem = await api.sign(author, await expired_copy(platform, step_up), report["id"], version,
                                         meaning="approved")
        assert (status, problem["code"]) == (401, "step_up_expired"), problem

        async def final() -> dict[str, Any] | None:
            _, now = await api.call("GET", f"/api/reports/{report['id']}", author)
            return now if now["status"] == "final" else None
        signed = await eventually(final, "the report never became final")
        assert signed["signature"]["signature_id"] == signature["signature_id"]
        assert signed["integrity"]["intact"] is True
        await eventually(lambda: worklist_status("final"), "the worklist never showed the report final")

        # the manifestation is on the rendering: printed name, date and time, meaning
        status, rendering = await api.call("GET", f"/api/reports/{report['id']}/rendering", manager,
                                           headers={"Accept": "text/plain"})
        assert status == 200 and signature["signer_name"] in rendering and "authored" in rendering.lower()
        assert signature["signed_at"][:10] in rendering

        # after signing: no edit; an addendum, signed on its own under a new key
        status, problem = await api.call("PUT", f"/api/reports/{report['id']}/draft", author,
                                         {"content": {"sections": sections}, "base_version": version})
        assert status == 409, problem
        status, rotated = await api.call("POST", "/api/signatures/keys/rotate", admin, {})
        assert status in (200, 201), rotated
        status, addendum = await api.call("POST", f"/api/reports/{report['id']}/addenda", colleague,
                                          {"text": "Comparison with the prior study: unchanged."})
        assert status in (200, 201), addendum
        await asyncio.sleep(1)  # the addendum's submission reaches signature as an event
        status, second = await api.sign(colleague, await api.step_up(colleague), report["id"],
                                        addendum["of_version"], addendum_id=addendum["id"])
        assert status == 201, second
        assert second["key_id"] != signature["key_id"]

        async def amended() -> dict[str, Any] | None:
            _, now = await api.call("GET", f"/api/reports/{report['id']}", author)
            return now if now["status"] == "amended" else None
        now = await eventually(amended, "the addendum never became part of the report")
        assert [a["signature"]["signature_id"] for a in now["addenda"]] == [second["signature_id"]]
        assert now["content_sha256"] == signed["content_sha256"]  # the signed version itself is untouched
        await eventually(lambda: worklist_status("amended"), "the worklist never showed the amendment")

        # the first signature still verifies after the rotation; the audit trail has both, in order
        status, verified = await api.call("GET", f"/api/signatures/verify/{signature['signature_id']}", manager)
        assert status == 200 and verified["valid"] is True, verified
        status, trail = await api.call("GET", f"/api/signatures/audit-trail/{report['id']}", manager)
        signings = [e for e in trail["entries"] if e["action"] == "signed"]
        assert [e["signature_id"] for e in signings] == [signature["signature_id"], second["signature_id"]]
        assert [e["meaning"] for e in signings] == ["authored", "authored"]
        assert any(e["action"] == "refused" for e in trail["entries"])  # the reused step-up, on the record

        # a row changed behind the services' backs: verify and the report both say so
        assert await execute(platform, "signature",
                             "UPDATE signable_versions SET content = replace(content, 'Normal', 'Abnormal') "
                             "WHERE report_id = :r AND version = :v AND addendum_key = :k",
                             r=uuid.UUID(report["id"]), v=version, k=REPORT_ITSELF) == 1
        status, verified = await api.call("GET", f"/api/signatures/verify/{signature['signature_id']}", manager)
        assert status == 200 and verified["valid"] is False
        assert "content_changed" in [p["code"] for p in verified["problems"]]
        changed = await execute(platform, "reporting",
                                "UPDATE report_versions SET content = :c WHERE report_id = :r AND version = :v",
                                c='{"sections": {"impression": "Abnormal CT head."}, "annotations": []}',
                                r=uuid.UUID(report["id"]), v=version)
        assert changed == 1
        _, tampered = await api.call("GET", f"/api/reports/{report['id']}", manager)
        assert tampered["integrity"]["intact"] is False
        _, rendering = await api.call("GET", f"/api/reports/{report['id']}/rendering", manager,
                                      headers={"Accept": "text/plain"})
        assert "ALTERED" in rendering
