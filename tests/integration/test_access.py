"""The identity test battery (S4 to S7 of the security reference), through the gateway of a running platform.

Each scenario runs embedded (SQLite, in-process bus) and distributed (PostgreSQL, RabbitMQ), on one platform per
mode. Every test makes organisations and users of its own, so tests share no sessions, lockout counts or TOTP steps.
The last two tests rotate the signing key and must stay last (see ``test_route_matrix_…``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import jwt
import pyotp
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from multidict import CIMultiDictProxy
from pydicom.uid import generate_uid
from sqlalchemy import update

from gateway.domain import ROUTE_ROLES
from identity.adapters.tables import UserRow
from identity.service_layer.unit_of_work import IdentityUnitOfWork
from radcommon.contracts import RoleValues, StudyReceivedV1
from radcommon.messaging import Message
from radcommon.testing import TokenMinter
from support.platform import DEMO_PASSWORD, KINDS, identity_signing_key, platform_of
from support.studies import ORG_ROOT, storescu, write_ct_study
from telerad.platform import Platform

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PW = "a long password for the access tests"
ALLOWED_ORIGIN = "https://app.telerad.test"
PROBLEM_JSON = "application/problem+json"
PATH_PARAMETER = re.compile(r"\{[^}]+\}")
#: How long ended sessions may take to reach the worklist (outbox relay, bus, consumer, its 2 s cache).
PROPAGATION_SECONDS = 10.0


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    def __str__(self) -> str:
        return f"{self.status} {self.text[:300]}"


@dataclass(frozen=True)
class Organization:
    id: UUID
    emails: list[str]


@dataclass
class Api:
    """The platform, and a client for its gateway."""

    platform: Platform
    client: aiohttp.ClientSession
    addresses: Iterator[int] = field(default_factory=lambda: itertools.count(2))

    @asynccontextmanager
    async def elsewhere(self) -> AsyncIterator[Api]:
        """A client calling from another loopback address (127.0.0.N), for tests that make sign-ins fail:
        identity counts failures per address too, and a locked address would fail every later test."""
        address = f"127.0.0.{next(self.addresses)}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0))) as client:
            yield Api(self.platform, client, self.addresses)

    async def call(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                   headers: dict[str, str] | None = None) -> Reply:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.client.request(method, self.platform.gateway_url + path, json=json,
                                       headers=headers) as response:
            return Reply(response.status, response.headers, await response.text())

    async def login(self, email: str, password: str = PW, **second_factor: str) -> Reply:
        return await self.call("POST", "/api/auth/login", json={"email": email, "password": password,
                                                                **second_factor})

    async def tokens(self, email: str, password: str = PW, **second_factor: str) -> dict[str, Any]:
        reply = await self.login(email, password, **second_factor)
        assert reply.status == 200, f"login as {email}: {reply}"
        return reply.json()  # type: ignore[no-any-return]

    async def organization(self, *roles: RoleValues) -> Organization:
        """A new organisation with one user per role given, all with the password PW."""
        slug = f"t-{uuid4().hex[:12]}"
        emails = [f"{role.value}.{n}@{slug}.test" for n, role in enumerate(roles)]
        organization_id = uuid4()
        created = await self.platform.services["identity"].create_organization(  # type: ignore[attr-defined]
            organization_id=organization_id, name=f"Organisation {slug}", slug=slug,
            users=[(email, f"User {n}", [role]) for n, (email, role) in enumerate(zip(emails, roles, strict=True))],
            password=PW)
        assert created
        return Organization(organization_id, emails)

    async def worklist(self, token: str) -> Reply:
        return await self.call("GET", "/api/worklist", token=token)

    async def worklist_refuses(self, *tokens: str) -> None:
        """Poll until the worklist refuses every token (401), as it must once the session's end has reached it."""
        async def refused() -> bool:
            replies = [await self.worklist(token) for token in tokens]
            assert all(r.status in (200, 401) for r in replies), [str(r) for r in replies]
            return all(r.status == 401 for r in replies)

        await eventually(refused, "the worklist never refused the ended session's access tokens")


async def eventually(check: Callable[[], Awaitable[bool]], failure: str, timeout: float = PROPAGATION_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{failure} (waited {timeout:.0f} s)")
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=KINDS)
async def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    # Most requests come from 127.0.0.1: lift the gateway's per-address sign-in limit (10 in a burst).
    gateway = {"login_burst": 10_000, "cors_origins": [ALLOWED_ORIGIN]}
    data_dir = tmp_path_factory.mktemp(request.param)
    async with platform_of(request.param, data_dir, gateway=gateway) as platform, aiohttp.ClientSession() as client:
        yield Api(platform, client)


# --- tokens -------------------------------------------------------------------------------------------------------

def unverified_claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})  # type: ignore[no-any-return]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HMAC-signed by hand: PyJWT refuses to use a public key as an HMAC secret, an attacker would not."""
    signing_input = unsigned({**header, "alg": "HS256"}, claims)
    return f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def next_code(secret: str) -> str:
    """The code of the next 30 s step: inside the ±1 step window, and later than any code used before now."""
    return pyotp.TOTP(secret).at(time.time() + 30)


def wrong_code(secret: str) -> str:
    """Six digits that are no code of the steps around now."""
    near = {pyotp.TOTP(secret).at(time.time() + seconds) for seconds in range(-90, 120, 30)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in near)


async def enrol_totp(api: Api, token: str) -> tuple[str, list[str]]:
    """Enrol TOTP (using the current step's code) and return the secret and the ten backup codes."""
    enrolment = await api.call("POST", "/api/auth/2fa/enrol", token=token, json={})
    assert enrolment.status == 200, str(enrolment)
    secret = enrolment.json()["secret"]
    confirmed = await api.call("POST", "/api/auth/2fa/verify", token=token, json={"code": pyotp.TOTP(secret).now()})
    assert confirmed.status == 200, str(confirmed)
    codes = confirmed.json()["backup_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    return secret, codes


def assert_problem(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status, str(reply)
    assert reply.content_type == PROBLEM_JSON, reply.headers
    document = reply.json()
    assert document["status"] == status
    return document  # type: ignore[no-any-return]


def assert_unauthorized(reply: Reply) -> dict[str, Any]:
    document = assert_problem(reply, 401)
    assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer"), reply.headers
    return document


def concrete(path: str) -> str:
    """The route's path with a random UUID for each parameter."""
    return PATH_PARAMETER.sub(lambda _: str(uuid4()), path)


def empty_body(method: str) -> dict[str, Any] | None:
    return {} if method in ("POST", "PUT", "PATCH") else None


# --- sessions -----------------------------------------------------------------------------------------------------

async def test_refresh_rotates_the_pair_and_a_reused_refresh_token_ends_the_whole_session(api: Api) -> None:
    [email] = (await api.organization(RoleValues.RADIOLOGIST)).emails
    first = await api.tokens(email)
    assert (await api.worklist(first["access_token"])).status == 200

    refreshed = await api.call("POST", "/api/auth/refresh-token", json={"refresh_token": first["refresh_token"]})
    assert refreshed.status == 200, str(refreshed)
    second = refreshed.json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert unverified_claims(second["access_token"])["sid"] == unverified_claims(first["access_token"])["sid"]
    assert (await api.worklist(second["access_token"])).status == 200

    # the old refresh token again: refused, and the family ends with it
    assert_unauthorized(await api.call("POST", "/api/auth/refresh-token",
                                       json={"refresh_token": first["refresh_token"]}))
    assert_unauthorized(await api.call("POST", "/api/auth/refresh-token",
                                       json={"refresh_token": second["refresh_token"]}))
    assert_unauthorized(await api.call("GET", "/api/auth/session-status", token=second["access_token"]))
    await api.worklist_refuses(second["access_token"], first["access_token"])


async def test_logout_ends_the_session_and_extend_session_issues_a_new_access_token(api: Api) -> None:
    [email] = (await api.organization(RoleValues.MANAGER)).emails
    pair = await api.tokens(email)
    claims = unverified_claims(pair["access_token"])

    status = await api.call("GET", "/api/auth/session-status", token=pair["access_token"])
    assert status.status == 200, str(status)
    body = status.json()
    assert (body["session_id"], body["user_id"], body["email"]) == (claims["sid"], claims["sub"], email)
    assert (body["roles"], body["amr"], body["totp_enabled"]) == (["manager"], ["pwd"], False)
    assert body["idle_expires_at"] > body["last_seen_at"]

    extended = await api.call("POST", "/api/auth/extend-session", token=pair["access_token"], json={})
    assert extended.status == 200, str(extended)
    renewed = extended.json()["access_token"]
    assert renewed != pair["access_token"]
    assert 0 < extended.json()["expires_in"] <= 300
    assert unverified_claims(renewed)["sid"] == claims["sid"]
    assert unverified_claims(renewed)["jti"] != claims["jti"]
    assert (await api.worklist(renewed)).status == 200
    assert (await api.call("GET", "/api/auth/session-status", token=renewed)).status == 200

    logout = await api.call("POST", "/api/auth/logout", token=renewed, json={})
    assert logout.status == 204, str(logout)
    assert_unauthorized(await api.call("POST", "/api/auth/refresh-token",
                                       json={"refresh_token": pair["refresh_token"]}))
    assert_unauthorized(await api.call("GET", "/api/auth/session-status", token=pair["access_token"]))
    assert_unauthorized(await api.call("POST", "/api/auth/extend-session", token=renewed, json={}))
    await api.worklist_refuses(pair["access_token"], renewed)


async def test_an_ended_session_cannot_enrol_a_second_factor(api: Api) -> None:
    [email] = (await api.organization(RoleValues.RADIOLOGIST)).emails
    pair = await api.tokens(email)
    assert (await api.call("POST", "/api/auth/logout", token=pair["access_token"], json={})).status == 204
    # e.g. a stolen access token whose refresh-token family was just revoked: it must not set the TOTP secret
    assert_unauthorized(await api.call("POST", "/api/auth/2fa/enrol", token=pair["access_token"], json={}))


# --- second factor and step-up ------------------------------------------------------------------------------------

async def test_totp_enrolment_then_sign_in_needs_a_code_refuses_replays_and_backup_codes_work_once(api: Api) -> None:
    async with api.elsewhere() as client:
        [email] = (await client.organization(RoleValues.RADIOLOGIST)).emails
        secret, backup_codes = await enrol_totp(client, (await client.tokens(email))["access_token"])

        without = assert_unauthorized(await client.login(email))
        assert without.get("second_factor_required") is True, without
        assert_unauthorized(await client.login(email, totp=wrong_code(secret)))
        # three steps ahead: outside the ±1 step window
        assert_unauthorized(await client.login(email, totp=pyotp.TOTP(secret).at(time.time() + 90)))

        code = next_code(secret)
        signed_in = await client.tokens(email, totp=code)
        assert unverified_claims(signed_in["access_token"])["amr"] == ["pwd", "otp"]
        replayed = assert_unauthorized(await client.login(email, totp=code))
        assert "second_factor_required" not in replayed

        with_backup = await client.tokens(email, backup_code=backup_codes[3])
        assert "otp" in unverified_claims(with_backup["access_token"])["amr"]
        assert_unauthorized(await client.login(email, backup_code=backup_codes[3]))
        assert_unauthorized(await client.login(email, "not the password at all", backup_code=backup_codes[4]))
        assert (await client.login(email, backup_code=backup_codes[4])).status == 200  # not spent by the bad password

        status = await client.call("GET", "/api/auth/session-status", token=signed_in["access_token"])
        assert status.json()["totp_enabled"] is True


async def test_step_up_for_signing_needs_a_radiologist_with_totp_and_its_token_is_no_access_token(api: Api) -> None:
    async with api.elsewhere() as client:
        organization = await client.organization(RoleValues.RADIOLOGIST, RoleValues.RADIOLOGIST, RoleValues.TECHNICIAN)
        enrolled, plain, technician = organization.emails
        token = (await client.tokens(enrolled))["access_token"]
        secret, _ = await enrol_totp(client, token)

        wrong = wrong_code(secret)
        assert_unauthorized(await client.call("POST", "/api/auth/step-up", token=token,
                                           json={"password": PW, "totp": wrong}))
        assert_unauthorized(await client.call("POST", "/api/auth/step-up", token=token,
                                           json={"password": "not the password at all", "totp": wrong}))

        stepped = await client.call("POST", "/api/auth/step-up", token=token,
                                    json={"password": PW, "totp": next_code(secret)})
        assert stepped.status == 200, str(stepped)
        step_up_token = stepped.json()["step_up_token"]
        claims = unverified_claims(step_up_token)
        assert (claims["aud"], claims["purpose"], claims["amr"]) == ("telerad-step-up", "sign", ["pwd", "otp"])
        assert 0 < claims["exp"] - claims["iat"] <= 120
        assert claims["sid"] == unverified_claims(token)["sid"]
        assert jwt.get_unverified_header(step_up_token)["typ"] == "step-up+jwt"
        for method, path in (("GET", "/api/auth/session-status"), ("GET", "/api/worklist")):
            assert_unauthorized(await client.call(method, path, token=step_up_token))

        without_totp = (await client.tokens(plain))["access_token"]
        assert_problem(await client.call("POST", "/api/auth/step-up", token=without_totp,
                                      json={"password": PW, "totp": "123456"}), 403)

        # a technician with TOTP would pass identity's checks: the 403 is the gateway's role rule
        technician_token = (await client.tokens(technician))["access_token"]
        technician_secret, _ = await enrol_totp(client, technician_token)
        assert_problem(await client.call("POST", "/api/auth/step-up", token=technician_token,
                                      json={"password": PW, "totp": next_code(technician_secret)}), 403)

        # wrong answers count towards the account's lockout, and a locked account cannot step up at all
        for attempt in range(1, 11):
            reply = await client.call("POST", "/api/auth/step-up", token=token,
                                      json={"password": f"wrong password {attempt}", "totp": wrong_code(secret)})
            if reply.status == 429:
                break
            assert_unauthorized(reply)
        else:
            raise AssertionError("ten wrong step-ups did not lock the account")
        assert_problem(await client.call("POST", "/api/auth/step-up", token=token,
                                      json={"password": PW, "totp": next_code(secret)}), 429)


# --- lockout ------------------------------------------------------------------------------------------------------

async def test_repeated_wrong_passwords_lock_the_account(api: Api) -> None:
    async with api.elsewhere() as client:
        [email, other] = (await client.organization(RoleValues.TECHNICIAN, RoleValues.TECHNICIAN)).emails
        unknown = assert_unauthorized(await client.login(f"nobody.{uuid4().hex[:8]}@nowhere.test"))
        for attempt in range(1, 11):
            reply = await client.login(email, f"wrong password number {attempt}")
            if reply.status == 429:
                break
            # the same answer as for an unknown account: no enumeration by the response
            assert assert_unauthorized(reply) == unknown
        else:
            raise AssertionError("ten wrong passwords in a row did not lock the account")
        assert attempt <= 10

        for password in ("still the wrong password", PW):
            locked = await client.login(email, password)
            assert_problem(locked, 429)
            assert 1 <= int(locked.headers["Retry-After"]) <= 3600, locked.headers
        # the lock is the account's, not the address's
        assert (await client.login(other)).status == 200


async def test_failures_older_than_a_day_do_not_count_towards_a_lockout(api: Api) -> None:
    async with api.elsewhere() as client:
        [email] = (await client.organization(RoleValues.TECHNICIAN)).emails
        identity = client.platform.services["identity"]
        async with IdentityUnitOfWork(identity.db) as uow:  # type: ignore[arg-type]
            # five typos, yesterday
            await uow.session.execute(update(UserRow).where(UserRow.email == email).values(  # type: ignore[arg-type]
                failed_logins=5, last_failed_at=datetime.now(UTC) - timedelta(hours=25)))
            await uow.commit()
        assert_unauthorized(await client.login(email, "one typo today"))
        assert (await client.login(email)).status == 200


# --- tenants ------------------------------------------------------------------------------------------------------

async def storescu_as(port: int, calling_ae_title: str, *paths: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        "storescu", "-aet", calling_ae_title, "-aec", "TELERAD", "127.0.0.1", str(port), *map(str, paths),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


async def test_organisations_see_only_their_own_worklist_and_modalities(api: Api, tmp_path: Path) -> None:
    port = api.platform.dicom_port
    a_study = write_ct_study(tmp_path / "a", series=1, instances_per_series=2, accession_number="ACCA",
                             patient_id="PATA", patient_name="Tenant^Alpha")
    await storescu(port, *a_study.files)  # storescu's calling AE title belongs to the demo organisation
    b = await api.organization(RoleValues.ADMIN, RoleValues.RADIOLOGIST, RoleValues.VIEWER)
    b_tokens = [(await api.tokens(email))["access_token"] for email in b.emails]
    b_study = write_ct_study(tmp_path / "b", series=1, instances_per_series=1, accession_number="ACCB",
                             patient_id="PATB", patient_name="Tenant^Bravo")
    modalities = ("POST", "/api/modalities") in ROUTE_ROLES
    if modalities:
        b_ae_title = f"B{uuid4().hex[:10].upper()}"
        registered = await api.call("POST", "/api/modalities", token=b_tokens[0],
                                    json={"ae_title": b_ae_title, "host": "127.0.0.1"})
        assert registered.status == 201, str(registered)
        await storescu_as(port, b_ae_title, *b_study.files)
        b_uids = [b_study.study_instance_uid]
    else:
        b_uids = []
    # B also gets a study of its own over the bus, one with the same Study Instance UID as A's
    b_uids += [generate_uid(ORG_ROOT), a_study.study_instance_uid]
    events = [StudyReceivedV1(organization_id=b.id, study_instance_uid=uid, patient_id="PATB",
                              patient_name="Tenant^Bravo", accession_number="ACCB", modalities=["MR"],
                              number_of_series=1, number_of_instances=1) for uid in b_uids[-2:]]
    await api.platform.bus.publish([Message(str(e.event_id), e.routing_key, e.model_dump_json().encode())
                                    for e in events])

    a_token = (await api.tokens("radiologist@demo.telerad", DEMO_PASSWORD))["access_token"]

    async def arrived() -> bool:
        a_page = (await api.worklist(a_token)).json()
        b_pages = [(await api.worklist(token)).json() for token in b_tokens]
        return any(i["study_instance_uid"] == a_study.study_instance_uid for i in a_page["items"]) and all(
            page["total"] >= len(b_uids) for page in b_pages)

    await eventually(arrived, "the studies never reached the worklists", timeout=20)
    await asyncio.sleep(1)  # anything that was going to leak has had the time to
    a_page = (await api.worklist(a_token)).json()
    assert {i["organization_id"] for i in a_page["items"]} == {str(api.platform.common.default_organization_id)}
    assert [(i["patient_name"], i["accession_number"]) for i in a_page["items"]
            if i["study_instance_uid"] == a_study.study_instance_uid] == [("Tenant^Alpha", "ACCA")]
    assert not {i["study_instance_uid"] for i in a_page["items"]} & set(b_uids[:-1])
    assert all(i["patient_id"] != "PATB" for i in a_page["items"])
    for token in b_tokens:
        page = (await api.worklist(token)).json()
        assert page["total"] == len(b_uids), page
        assert sorted(i["study_instance_uid"] for i in page["items"]) == sorted(b_uids)
        assert {(i["organization_id"], i["patient_name"]) for i in page["items"]} == {(str(b.id), "Tenant^Bravo")}

    # DICOMweb: A's study does not exist for B (404, never 403: nothing leaks), and does for A
    a_metadata = f"/dicomweb/studies/{a_study.study_instance_uid}/metadata"
    for token in b_tokens:
        assert_problem(await api.call("GET", a_metadata, token=token), 404)
    assert (await api.call("GET", a_metadata, token=a_token)).status == 200

    if modalities:
        a_admin = (await api.tokens("admin@demo.telerad", DEMO_PASSWORD))["access_token"]
        a_listed = await api.call("GET", "/api/modalities", token=a_admin)
        b_listed = await api.call("GET", "/api/modalities", token=b_tokens[0])
        assert a_listed.status == b_listed.status == 200, (str(a_listed), str(b_listed))
        assert [m["ae_title"] for m in b_listed.json()["items"]] == [b_ae_title]
        assert a_listed.json()["items"] and b_ae_title not in {m["ae_title"] for m in a_listed.json()["items"]}
        for modality in a_listed.json()["items"]:  # B's admin cannot remove A's modalities
            assert_problem(await api.call("DELETE", f"/api/modalities/{modality['id']}", token=b_tokens[0]), 404)
        assert len((await api.call("GET", "/api/modalities", token=a_admin)).json()["items"]) == len(
            a_listed.json()["items"])


# --- headers ------------------------------------------------------------------------------------------------------

async def test_security_headers_on_every_kind_of_response_and_cors_only_for_allowed_origins(api: Api) -> None:
    [email] = (await api.organization(RoleValues.TECHNICIAN)).emails
    token = (await api.tokens(email))["access_token"]
    replies = {
        "gateway 200": await api.call("GET", "/.well-known/jwks.json"),
        "proxied 200": await api.call("GET", "/api/auth/session-status", token=token),
        "proxied 422": await api.call("POST", "/api/auth/login", json={}),
        "401": await api.call("GET", "/api/worklist"),
        "403": await api.call("POST", "/api/auth/keys/rotate", token=token, json={}),
        "unknown route": await api.call("GET", "/api/no-such-route", token=token),
    }
    for name, reply in replies.items():
        assert reply.headers.get("X-Content-Type-Options") == "nosniff", name
        assert "default-src 'none'" in reply.headers.get("Content-Security-Policy", ""), name
        hsts = re.fullmatch(r"max-age=(\d+)(; ?includeSubDomains)?(; ?preload)?",
                            reply.headers.get("Strict-Transport-Security", ""))
        assert hsts and int(hsts[1]) >= 31_536_000, name
        assert "Access-Control-Allow-Origin" not in reply.headers, name
    assert [r.status for r in replies.values()] == [200, 200, 422, 401, 403, 403]

    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    refused = await api.call("OPTIONS", "/api/worklist", headers={"Origin": "https://evil.example", **preflight})
    assert refused.status == 403, str(refused)
    assert "Access-Control-Allow-Origin" not in refused.headers
    allowed = await api.call("OPTIONS", "/api/worklist", headers={"Origin": ALLOWED_ORIGIN, **preflight})
    assert allowed.status == 204, str(allowed)
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "GET" in allowed.headers["Access-Control-Allow-Methods"]
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
    cross = await api.call("GET", "/api/worklist", token=token, headers={"Origin": "https://evil.example"})
    assert cross.status == 200 and "Access-Control-Allow-Origin" not in cross.headers  # the browser keeps it
    same = await api.call("GET", "/api/auth/session-status", token=token, headers={"Origin": ALLOWED_ORIGIN})
    assert same.status == 200 and same.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


# --- DICOMweb routes ----------------------------------------------------------------------------------------------

async def test_every_dicomweb_route_of_dicom_ingest_is_in_the_gateways_matrix(api: Api) -> None:
    """So the matrix below covers all of DICOMweb: what dicom-ingest serves under /dicomweb is what the gateway
    lets through; everyone of an organisation reads, everyone but viewers stores (STOW-RS)."""
    routes = api.platform.services["dicom-ingest"].app.router.routes()
    served = {(route.method, route.resource.canonical) for route in routes if route.resource is not None
              and route.resource.canonical.startswith("/dicomweb/") and route.method != "HEAD"}
    allowed = {key: roles for key, roles in ROUTE_ROLES.items() if key[1].startswith("/dicomweb/")}
    assert served == set(allowed) and len(served) >= 17
    organization_roles = set(RoleValues) - {RoleValues.OPERATOR}
    for (method, path), roles in allowed.items():
        assert roles == (organization_roles - {RoleValues.VIEWER} if method == "POST" else organization_roles), path


# --- route matrix (rotates the signing key: keep these last) -------------------------------------------------------

async def bad_tokens(api: Api, valid: str, step_up: str) -> tuple[dict[str, str | None], str]:
    """Authorization header values that must all be refused, and a token made the same way with nothing wrong
    with it (a control); ``valid`` is a real access token to start from."""
    platform = api.platform
    kid, key = await identity_signing_key(platform)
    public = key.public_key()
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem_public = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwks = (await api.call("GET", "/.well-known/jwks.json")).json()
    assert kid in {k["kid"] for k in jwks["keys"]}
    now = int(time.time())
    claims = {**unverified_claims(valid), "roles": sorted(RoleValues), "jti": str(uuid4())}
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": kid}

    def signed(changes: dict[str, Any], drop: Iterable[str] = (), headers: dict[str, Any] | None = None,
               signer: Ed25519PrivateKey = key) -> str:
        payload = {k: v for k, v in {**claims, **changes}.items() if k not in drop}
        return jwt.encode(payload, signer, algorithm="EdDSA", headers={**header, **(headers or {})})

    head, _, signature = valid.split(".")
    minter = TokenMinter(issuer=platform.common.public_url, kid=kid)
    attacker = Ed25519PrivateKey.generate()
    attacker_x = b64url(attacker.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    tokens = {
        "expired": signed({"iat": now - 3600, "nbf": now - 3600, "exp": now - 1800}),
        "not yet valid": signed({"iat": now, "nbf": now + 3600, "exp": now + 7200}),
        "wrong issuer": signed({"iss": "https://evil.example"}),
        "wrong audience": signed({"aud": "another-service"}),
        "no session id": signed({}, drop=["sid"]),
        "tampered payload": f"{head}.{b64url(json.dumps(claims).encode())}.{signature}",
        "forged signature with the real kid": minter.token(
            organization_id=UUID(claims["org"]), roles=list(RoleValues), user_id=UUID(claims["sub"]),
            session_id=UUID(claims["sid"])),
        "unknown kid": signed({}, headers={"kid": "no-such-key"}, signer=attacker),
        "jku injection": signed({}, headers={"kid": "attacker", "jku": "http://127.0.0.1:9/jwks.json"},
                                signer=attacker),
        "embedded jwk": signed({}, headers={"kid": "attacker", "jwk": {"kty": "OKP", "crv": "Ed25519",
                                                                      "x": attacker_x}}, signer=attacker),
        "alg none": unsigned({**header, "alg": "none"}, claims) + ".",
        "HS256 with the raw public key": hs256(header, claims, raw_public),
        "HS256 with the PEM public key": hs256(header, claims, pem_public),
        "step-up token": step_up,
    }
    variants: dict[str, str | None] = {
        "no token": None, "another scheme": "Basic " + base64.b64encode(b"someone:something").decode(),
        "empty bearer": "Bearer ", "garbage": "Bearer garbage",
        **{name: f"Bearer {token}" for name, token in tokens.items()}}
    return variants, signed({})  # the control: nothing wrong with it


async def test_route_matrix_bad_tokens_get_401_and_roles_get_exactly_their_routes(api: Api) -> None:
    """Every (method, route) of gateway.domain.ROUTE_ROLES, read now so that new routes are covered.

    Calls share one session per role. An unsafe call may end its session (log out) or otherwise leave it unusable,
    so after each one the session is checked, and a dead one replaced by a spare of the same role. Every session
    is signed in before the first call: tokens issued after a rotation of the signing key would meet the
    gateway's stale key cache (see the test below). This test rotates the key, so it and that test run last.
    """
    routes = sorted(ROUTE_ROLES.items())
    roles = list(RoleValues)
    pairs = [(route, role) for route, allowed in routes for role in roles if role in allowed]
    organization = await api.organization(*roles, *roles, *roles, RoleValues.RADIOLOGIST)
    tokens = [(await api.tokens(email))["access_token"] for email in organization.emails[:-1]]
    shared = dict(zip(roles, tokens, strict=False))
    spares = {role: tokens[n + len(roles)::len(roles)] for n, role in enumerate(roles)}

    signer = organization.emails[-1]
    signer_token = (await api.tokens(signer))["access_token"]
    secret, _ = await enrol_totp(api, signer_token)
    stepped = await api.call("POST", "/api/auth/step-up", token=signer_token,
                             json={"password": PW, "totp": next_code(secret)})
    assert stepped.status == 200, str(stepped)
    variants, control = await bad_tokens(api, shared[RoleValues.TECHNICIAN], stepped.json()["step_up_token"])
    assert (await api.call("GET", "/api/auth/session-status", token=control)).status == 200

    failures: list[str] = []
    for (method, path), _ in routes:
        body = empty_body(method)
        for name, authorization in variants.items():
            reply = await api.call(method, concrete(path), json=body,
                                   headers={"Authorization": authorization} if authorization else None)
            if (reply.status != 401 or reply.content_type != PROBLEM_JSON
                    or not reply.headers.get("WWW-Authenticate", "").startswith("Bearer")):
                failures.append(f"{method} {path} with {name}: {reply} {dict(reply.headers)}")
        for role in roles:
            if role in ROUTE_ROLES[(method, path)]:
                continue
            reply = await api.call(method, concrete(path), token=shared[role], json=body)
            if reply.status != 403 or reply.content_type != PROBLEM_JSON:
                failures.append(f"{method} {path} as {role} (not allowed): {reply}")
    replaced: list[str] = []
    for (method, path), role in pairs:
        body = empty_body(method)
        reply = await api.call(method, concrete(path), token=shared[role], json=body)
        if reply.status in (401, 403) or reply.status >= 500:
            failures.append(f"{method} {path} as {role} (allowed): {reply}")
        if method != "GET" and (await api.call("GET", "/api/auth/session-status", token=shared[role])).status != 200:
            assert spares[role], f"{method} {path} ended the last session of {role}: sign in more spares"
            shared[role] = spares[role].pop()
            replaced.append(f"{method} {path}")
    assert not failures, "\n".join(failures)
    assert set(replaced) == {"POST /api/auth/logout"}, replaced  # the one route that ends the caller's session


async def test_tokens_signed_right_after_a_key_rotation_are_accepted(api: Api) -> None:
    [email] = (await api.organization(RoleValues.RADIOLOGIST)).emails
    # any unknown kid makes the gateway refetch the key set unless it did so in the last 30 s: it has now
    assert_unauthorized(await api.call("GET", "/api/auth/session-status",
                                       token=TokenMinter(kid=uuid4().hex).token(organization_id=uuid4())))
    identity = api.platform.services["identity"]
    async with IdentityUnitOfWork(identity.db) as uow:  # type: ignore[arg-type]
        rotated = (await identity.deps.keyring.rotate(uow, datetime.now(UTC))).kid  # type: ignore[attr-defined]
    token = (await api.tokens(email))["access_token"]
    # the new key is published at once and signs only after the verifiers can have fetched it
    published = await api.call("GET", "/.well-known/jwks.json")
    assert rotated in {key["kid"] for key in published.json()["keys"]}
    assert jwt.get_unverified_header(token)["kid"] != rotated
    assert (await api.call("GET", "/api/auth/session-status", token=token)).status == 200
    assert (await api.worklist(token)).status == 200
