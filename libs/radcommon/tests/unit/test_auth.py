import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import jwt
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from radcommon.auth import (
    STEP_UP_AUDIENCE,
    JwksClient,
    Principal,
    SqlRevocationList,
    TokenError,
    TokenVerifier,
    auth_middleware,
    create_revocation_table,
    organization_of,
    parse_jwks,
    principal_key,
    principal_of,
    record_session_ended,
    require_roles,
    revoked_sessions_table,
)
from radcommon.contracts.identity import RoleValues, SessionEndedV1, SessionEndReasonValues
from radcommon.db import Database
from radcommon.http import create_app
from radcommon.outbox import metadata
from radcommon.uow import SqlUnitOfWork

ISSUER = "https://telerad.test"
USER, ORG, SESSION = uuid4(), uuid4(), uuid4()
DROP = object()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Key:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = Ed25519PrivateKey.generate()
        self.raw_public = self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                                 serialization.PublicFormat.Raw)
        self.pem_public = self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def jwk(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(self.raw_public), "kid": self.kid,
                "alg": "EdDSA", "use": "sig"}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": ISSUER, "aud": "telerad", "sub": str(USER), "org": str(ORG), "roles": ["radiologist"],
        "sid": str(SESSION), "email": "rad@example.org", "amr": ["pwd", "otp"], "iat": now, "nbf": now,
        "exp": now + 300, "jti": str(uuid4())}
    body.update(overrides)
    return {name: value for name, value in body.items() if value is not DROP}


def issue(key: Key, *, typ: Any = "at+jwt", kid: Any = None, **overrides: Any) -> str:
    headers: dict[str, Any] = {"typ": typ}
    if kid is not DROP:
        headers["kid"] = kid or key.kid
    return jwt.encode(claims(**overrides), key.private, algorithm="EdDSA", headers=headers)


def step_up(key: Key, **overrides: Any) -> str:
    return issue(key, typ="step-up+jwt", **{"aud": STEP_UP_AUDIENCE, "purpose": "sign", **overrides})


def forge(header: dict[str, Any], body: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


@pytest.fixture
def key() -> Key:
    return Key("key-1")


@pytest.fixture
def verifier(key: Key) -> TokenVerifier:
    return TokenVerifier(JwksClient.static({"keys": [key.jwk]}), issuer=ISSUER)


async def reason(verifier: TokenVerifier, token: Any, **kwargs: Any) -> str:
    with pytest.raises(TokenError) as caught:
        await verifier.verify(token, **kwargs)
    return caught.value.reason


# acceptance

async def test_a_valid_access_token_gives_its_principal(key: Key, verifier: TokenVerifier) -> None:
    jti = str(uuid4())
    token = issue(key, roles=["radiologist", "admin"], jti=jti)

    principal = await verifier.verify(token)

    assert principal == Principal(
        user_id=USER, organization_id=ORG, roles=frozenset({RoleValues.RADIOLOGIST, RoleValues.ADMIN}),
        session_id=SESSION, email="rad@example.org", amr=("pwd", "otp"), token_id=jti,
        expires_at=principal.expires_at, purpose=None)
    assert abs((principal.expires_at - datetime.now(UTC)).total_seconds() - 300) < 5
    assert principal.has_any(RoleValues.VIEWER, RoleValues.ADMIN)
    assert not principal.has_any(RoleValues.VIEWER, RoleValues.OPERATOR)


async def test_a_step_up_token_verifies_only_for_its_audience_and_purpose(key: Key, verifier: TokenVerifier
                                                                           ) -> None:
    principal = await verifier.verify(step_up(key), audience=STEP_UP_AUDIENCE, purpose="sign")
    assert principal.purpose == "sign"

    assert await reason(verifier, step_up(key)) == "bad_type"
    assert await reason(verifier, issue(key), audience=STEP_UP_AUDIENCE, purpose="sign") == "bad_type"
    assert await reason(verifier, step_up(key), audience=STEP_UP_AUDIENCE, purpose="export") == "wrong_purpose"
    assert await reason(verifier, step_up(key, purpose=DROP), audience=STEP_UP_AUDIENCE,
                        purpose="sign") == "wrong_purpose"


@pytest.mark.parametrize("aud", ["telerad-step-up", "other", ["telerad", "telerad-step-up"], ["telerad"]])
async def test_a_token_for_another_audience_is_refused(key: Key, verifier: TokenVerifier, aud: Any) -> None:
    assert await reason(verifier, issue(key, aud=aud)) == "bad_audience"


async def test_the_type_header_is_required_but_may_be_a_media_type(key: Key, verifier: TokenVerifier) -> None:
    assert await verifier.verify(issue(key, typ="application/AT+JWT"))
    assert await reason(verifier, issue(key, typ=None)) == "bad_type"
    assert await reason(verifier, issue(key, typ="JWT")) == "bad_type"


# algorithm and key

async def test_alg_none_is_refused(key: Key, verifier: TokenVerifier) -> None:
    for alg in ("none", "None", "NONE", ""):
        token = forge({"alg": alg, "kid": key.kid, "typ": "at+jwt"}, claims(), lambda _: b"")
        assert await reason(verifier, token) == "algorithm"
        assert await reason(verifier, token.rsplit(".", 1)[0] + ".") == "algorithm"


@pytest.mark.parametrize("secret", ["raw", "pem", "jwk-x"])
async def test_hs256_signed_with_the_public_key_is_refused(key: Key, verifier: TokenVerifier, secret: str) -> None:
    secrets = {"raw": key.raw_public, "pem": key.pem_public, "jwk-x": key.jwk["x"].encode()}
    token = forge({"alg": "HS256", "kid": key.kid, "typ": "at+jwt"}, claims(roles=["admin"]),
                  lambda data: hmac.new(secrets[secret], data, hashlib.sha256).digest())
    assert await reason(verifier, token) == "algorithm"


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "eddsa", "Ed25519", "HS512", None, 1])
async def test_only_eddsa_is_accepted(key: Key, verifier: TokenVerifier, alg: Any) -> None:
    token = forge({"alg": alg, "kid": key.kid, "typ": "at+jwt"}, claims(), key.private.sign)
    assert await reason(verifier, token) == "algorithm"


async def test_a_token_without_a_known_kid_is_refused(key: Key, verifier: TokenVerifier) -> None:
    assert await reason(verifier, issue(key, kid=DROP)) == "unknown_key"
    assert await reason(verifier, issue(key, kid="key-2")) == "unknown_key"
    assert await reason(verifier, issue(key, kid="x" * 500)) == "unknown_key"


async def test_a_wrong_signature_is_refused(key: Key, verifier: TokenVerifier) -> None:
    impostor = Key(key.kid)
    assert await reason(verifier, issue(impostor)) == "bad_signature"

    header, _, signature = issue(key).split(".")
    promoted = b64url(json.dumps(claims(roles=["admin"])).encode())
    assert await reason(verifier, f"{header}.{promoted}.{signature}") == "bad_signature"


async def test_keys_named_in_the_token_header_are_never_trusted(key: Key, verifier: TokenVerifier) -> None:
    attacker = Key("attacker")
    for kid in (attacker.kid, key.kid):
        token = jwt.encode(claims(roles=["operator"]), attacker.private, algorithm="EdDSA", headers={
            "typ": "at+jwt", "kid": kid, "jwk": attacker.jwk, "jku": "https://evil.test/jwks.json",
            "x5u": "https://evil.test/cert.pem"})
        assert await reason(verifier, token) in {"unknown_key", "bad_signature"}


async def test_critical_header_extensions_are_refused(key: Key, verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), key.private, algorithm="EdDSA",
                       headers={"typ": "at+jwt", "kid": key.kid, "crit": ["exp"], "exp": 1})
    assert await reason(verifier, token) == "malformed"


# time

async def test_expiry_counts_with_the_leeway(key: Key, verifier: TokenVerifier) -> None:
    now = int(time.time())
    assert await reason(verifier, issue(key, iat=now - 400, nbf=now - 400, exp=now - 10)) == "expired"
    assert await verifier.verify(issue(key, iat=now - 400, nbf=now - 400, exp=now - 2))


async def test_a_token_not_yet_valid_is_refused(key: Key, verifier: TokenVerifier) -> None:
    now = int(time.time())
    assert await reason(verifier, issue(key, nbf=now + 60)) == "not_yet_valid"
    assert await reason(verifier, issue(key, iat=now + 60)) == "not_yet_valid"
    assert await verifier.verify(issue(key, iat=now + 3, nbf=now + 3))


async def test_a_token_from_another_issuer_is_refused(key: Key, verifier: TokenVerifier) -> None:
    assert await reason(verifier, issue(key, iss="https://evil.test")) == "bad_issuer"
    assert await reason(verifier, issue(key, iss=ISSUER + "/")) == "bad_issuer"


# claims

@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "org", "roles", "sid", "email", "amr", "iat", "nbf",
                                   "exp", "jti"])
async def test_every_claim_is_required(key: Key, verifier: TokenVerifier, claim: str) -> None:
    assert await reason(verifier, issue(key, **{claim: DROP})) == "bad_claims"


@pytest.mark.parametrize(("claim", "value"), [
    ("sub", "not-a-uuid"), ("sub", 42), ("org", ["a"]), ("org", ""), ("sid", "1234"), ("sid", 7),
    ("roles", "admin"), ("roles", ["admin", "superuser"]), ("roles", [1]), ("roles", {"admin": 1}),
    ("amr", "pwd"), ("amr", [1]), ("email", 5), ("jti", 7), ("jti", ""), ("purpose", 5),
    ("exp", str(int(time.time()) + 300)), ("iat", True), ("iat", 1.0e400), ("nbf", "0"),
])
async def test_claims_of_the_wrong_type_are_refused(key: Key, verifier: TokenVerifier, claim: str, value: Any
                                                    ) -> None:
    assert await reason(verifier, issue(key, **{claim: value})) in {"bad_claims", "malformed"}


async def test_only_token_errors_escape_whatever_the_input(key: Key, verifier: TokenVerifier) -> None:
    rng = random.Random(1729)
    valid = issue(key)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00é"
    inputs: list[Any] = [None, b"bytes", 12, "", ".", "..", "...", "a.b.c", "a.b", "x" * 10_000, valid + "." + valid]
    headers: list[Any] = [[], "s", 1, None, {"alg": "EdDSA"}, {"alg": "EdDSA", "kid": ["key-1"]},
                         {"alg": "EdDSA", "kid": key.kid, "typ": "at+jwt", "b64": False}]
    for header in headers:
        inputs.append(f"{b64url(json.dumps(header).encode())}.{valid.split('.')[1]}.{valid.split('.')[2]}")
    for payload in (b"[]", b"null", b"{", b'{"exp": Infinity}', b"\xff\xfe", b'{"exp": NaN}'):
        header_segment = valid.split(".")[0]
        inputs.append(f"{header_segment}.{b64url(payload)}.AAAA")
        signing_input = f"{header_segment}.{b64url(payload)}"
        inputs.append(f"{signing_input}.{b64url(key.private.sign(signing_input.encode()))}")
    for _ in range(600):
        chars = list(valid)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice(alphabet)
        inputs.append("".join(chars))
        inputs.append(valid[: rng.randrange(len(valid))])
        inputs.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))))
    for value in inputs:
        try:
            await verifier.verify(value)
        except TokenError:
            pass


# JWKS over HTTP

class JwksServer:
    def __init__(self, *keys: Key) -> None:
        self.document: dict[str, Any] = {"keys": [k.jwk for k in keys]}
        self.requests = 0
        self.status = 200
        self.body: bytes | None = None
        self.server: TestServer | None = None

    async def handle(self, _: web.Request) -> web.Response:
        self.requests += 1
        if self.body is not None:
            return web.Response(status=self.status, body=self.body, content_type="application/json")
        return web.json_response(self.document, status=self.status)

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", self.handle)
        self.server = TestServer(app)
        await self.server.start_server()
        return str(self.server.make_url("/.well-known/jwks.json"))

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        await self.server.close()


async def test_the_algorithm_is_checked_before_any_key_is_fetched(key: Key) -> None:
    jwks_server = JwksServer(key)
    async with jwks_server as url:
        verifier = TokenVerifier(JwksClient(url), issuer=ISSUER)
        for alg in ("none", "HS256"):
            token = forge({"alg": alg, "kid": "unknown", "typ": "at+jwt"}, claims(), lambda _: b"")
            assert await reason(verifier, token) == "algorithm"
        assert jwks_server.requests == 0


async def test_tokens_of_either_key_verify_and_a_new_kid_costs_exactly_one_fetch() -> None:
    old, current, rotated = Key("old"), Key("current"), Key("rotated")
    jwks_server = JwksServer(old, current)
    async with jwks_server as url:
        verifier = TokenVerifier(JwksClient(url, min_refresh_seconds=0), issuer=ISSUER)
        assert await verifier.verify(issue(old))
        assert await verifier.verify(issue(current))
        assert await verifier.verify(issue(old))
        assert jwks_server.requests == 1

        jwks_server.document["keys"].append(rotated.jwk)
        assert await verifier.verify(issue(rotated))
        assert await verifier.verify(issue(rotated))
        assert jwks_server.requests == 2


async def test_a_flood_of_unknown_kids_refreshes_at_most_once_per_interval(key: Key) -> None:
    jwks_server = JwksServer(key)
    async with jwks_server as url:
        client = JwksClient(url, min_refresh_seconds=0.5)
        verifier = TokenVerifier(client, issuer=ISSUER)
        assert await verifier.verify(issue(key))
        assert jwks_server.requests == 1

        forged = [issue(Key(f"forged-{n}")) for n in range(50)]
        reasons = await asyncio.gather(*(reason(verifier, token) for token in forged))
        assert set(reasons) == {"unknown_key"}
        assert jwks_server.requests == 1

        await asyncio.sleep(0.55)
        await asyncio.gather(*(reason(verifier, token) for token in forged))
        assert jwks_server.requests == 2
        assert await verifier.verify(issue(key))
        assert jwks_server.requests == 2


async def test_a_failed_fetch_keeps_the_cached_keys(key: Key) -> None:
    jwks_server = JwksServer(key)
    async with jwks_server as url:
        client = JwksClient(url, min_refresh_seconds=0)
        verifier = TokenVerifier(client, issuer=ISSUER)
        assert await verifier.verify(issue(key))
        for status, body in ((500, b"{}"), (200, b"not json"), (200, b'{"keys": []}'),
                             (200, json.dumps({"keys": [{"kty": "RSA", "kid": "r", "n": "x", "e": "AQAB"}]}).encode()),
                             (302, b"")):
            jwks_server.status, jwks_server.body = status, body
            assert await reason(verifier, issue(Key("unknown"))) == "unknown_key"
            assert await verifier.verify(issue(key))
        assert jwks_server.requests == 6


async def test_an_unreachable_identity_is_a_token_error_not_a_crash(key: Key) -> None:
    verifier = TokenVerifier(JwksClient("http://127.0.0.1:9/jwks.json", timeout=1), issuer=ISSUER)
    assert await reason(verifier, issue(key)) == "unknown_key"


async def test_keys_are_replaced_by_a_refresh(key: Key) -> None:
    newer = Key("newer")
    jwks_server = JwksServer(key)
    async with jwks_server as url:
        verifier = TokenVerifier(JwksClient(url, min_refresh_seconds=0), issuer=ISSUER)
        assert await verifier.verify(issue(key))
        jwks_server.document = {"keys": [newer.jwk]}
        assert await verifier.verify(issue(newer))
        assert await reason(verifier, issue(key)) == "unknown_key"


async def test_an_old_key_set_is_refreshed_in_the_background(key: Key) -> None:
    jwks_server = JwksServer(key)
    async with jwks_server as url:
        client = JwksClient(url, min_refresh_seconds=0, max_age_seconds=0.1)
        verifier = TokenVerifier(client, issuer=ISSUER)
        assert await verifier.verify(issue(key))
        await asyncio.sleep(0.15)
        assert await verifier.verify(issue(key))
        await asyncio.sleep(0.05)
        assert jwks_server.requests == 2
        await client.close()


def test_only_ed25519_signature_keys_are_taken_from_a_jwk_set(key: Key) -> None:
    good = key.jwk
    keys = parse_jwks({"keys": [
        good,
        {**good, "kid": "enc", "use": "enc"},
        {**good, "kid": "es", "alg": "ES256"},
        {**good, "kid": "x448", "crv": "X448"},
        {"kty": "oct", "kid": "hmac", "k": b64url(b"secret")},
        {**good, "kid": "short", "x": b64url(b"too short")},
        {**good, "kid": "junk", "x": "!!!!"},
        {**good, "kid": ""},
        "not an object",
    ]})
    assert set(keys) == {key.kid}
    with pytest.raises(ValueError):
        parse_jwks({"keys": "nope"})
    with pytest.raises(ValueError):
        JwksClient.static({"keys": [{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]})


# revocation

@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'service.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.dispose()


def session_ended(session_id: UUID = SESSION, expire_by: datetime | None = None) -> SessionEndedV1:
    return SessionEndedV1(organization_id=ORG, session_id=session_id, user_id=USER,
                          reason=SessionEndReasonValues.LOGOUT,
                          tokens_expire_by=expire_by or datetime.now(UTC) + timedelta(minutes=10))


async def record(db: Database, event: SessionEndedV1) -> None:
    async with SqlUnitOfWork(db) as uow:
        await record_session_ended(event, uow)
        await uow.commit()


async def rows(db: Database) -> dict[str, datetime]:
    async with db.session() as session:
        result = await session.execute(sa.select(revoked_sessions_table))
        return {row.session_id: row.expires_at.replace(tzinfo=UTC) for row in result}


async def test_an_ended_session_is_revoked_and_redelivery_changes_nothing(db: Database) -> None:
    event = session_ended()
    await record(db, event)
    await record(db, event)

    assert await rows(db) == {str(SESSION): event.tokens_expire_by}
    revocations = SqlRevocationList(db)
    assert await revocations.is_revoked(SESSION)
    assert not await revocations.is_revoked(uuid4())


async def test_a_later_end_extends_the_row_and_an_earlier_one_does_not_shorten_it(db: Database) -> None:
    first = session_ended()
    await record(db, first)
    later = session_ended(expire_by=first.tokens_expire_by + timedelta(minutes=5))
    await record(db, later)
    await record(db, session_ended(expire_by=first.tokens_expire_by - timedelta(minutes=5)))
    assert await rows(db) == {str(SESSION): later.tokens_expire_by}


async def test_sessions_whose_tokens_expired_long_ago_are_forgotten(db: Database) -> None:
    long_ago, lately = uuid4(), uuid4()
    await record(db, session_ended(long_ago, datetime.now(UTC) - timedelta(hours=1)))
    await record(db, session_ended(lately, datetime.now(UTC) - timedelta(minutes=1)))
    assert set(await rows(db)) == {str(lately)}
    await record(db, session_ended())
    assert set(await rows(db)) == {str(lately), str(SESSION)}


async def test_answers_are_cached_briefly_when_not_revoked_and_long_when_revoked(db: Database) -> None:
    queries: list[str] = []
    sa.event.listen(db.engine.sync_engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_: queries.append(statement))
    revocations = SqlRevocationList(db, cache_seconds=0.3)
    for _ in range(100):
        assert not await revocations.is_revoked(SESSION)
    assert len([q for q in queries if "revoked_sessions" in q]) == 1

    await record(db, session_ended())
    assert not await revocations.is_revoked(SESSION)
    await asyncio.sleep(0.35)
    assert await revocations.is_revoked(SESSION)

    async with db.engine.begin() as conn:
        await conn.execute(sa.delete(revoked_sessions_table))
    await asyncio.sleep(0.35)
    assert await revocations.is_revoked(SESSION)


async def test_the_verifier_refuses_tokens_of_an_ended_session(db: Database, key: Key) -> None:
    verifier = TokenVerifier(JwksClient.static({"keys": [key.jwk]}), issuer=ISSUER,
                             revocations=SqlRevocationList(db))
    other = uuid4()
    assert await verifier.verify(issue(key, sid=str(other)))
    await record(db, session_ended())
    assert await reason(verifier, issue(key)) == "revoked"
    assert await verifier.verify(issue(key, sid=str(other)))


async def test_the_migration_creates_the_table_the_projection_writes(tmp_path: Path) -> None:
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}")

    def migrate(connection: sa.Connection) -> list[str | None]:
        create_revocation_table(Operations(MigrationContext.configure(connection)))
        return [index["name"] for index in sa.inspect(connection).get_indexes("revoked_sessions")]

    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(lambda c: metadata.create_all(c, tables=[
                t for t in metadata.sorted_tables if t.name != "revoked_sessions"]))
            assert await conn.run_sync(migrate) == ["revoked_sessions_expires_at"]
        await record(database, session_ended())
        assert await SqlRevocationList(database).is_revoked(SESSION)
    finally:
        await database.dispose()


# HTTP

@pytest.fixture
async def client(key: Key) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    verifier = TokenVerifier(JwksClient.static({"keys": [key.jwk]}), issuer=ISSUER)
    app = create_app("probe")
    app.middlewares.append(auth_middleware(verifier, public=("/api/auth/login", "/.well-known/")))

    async def me(request: web.Request) -> web.Response:
        return web.json_response({"user": str(request[principal_key].user_id),
                                  "org": str(organization_of(request))})

    async def admin(request: web.Request) -> web.Response:
        require_roles(request, RoleValues.ADMIN, RoleValues.OPERATOR)
        return web.json_response({"ok": True})

    async def login(request: web.Request) -> web.Response:
        return web.json_response({"principal": principal_key in request})

    async def whoami_if_any(request: web.Request) -> web.Response:
        return web.json_response({"user": str(principal_of(request).user_id)})

    app.router.add_get("/api/me", me)
    app.router.add_get("/api/admin", admin)
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/loginx", login)
    app.router.add_get("/.well-known/jwks.json", whoami_if_any)
    test_client = TestClient(TestServer(app))
    await test_client.start_server()
    yield test_client
    await test_client.close()


def bearer(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


async def test_a_bearer_token_puts_the_principal_on_the_request(client: TestClient, key: Key  # type: ignore[type-arg]
                                                                ) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = await client.get("/api/me", headers=bearer(issue(key), scheme))
        assert response.status == 200
        assert await response.json() == {"user": str(USER), "org": str(ORG)}


async def test_no_token_is_a_401_challenge_without_an_error_code(client: TestClient) -> None:  # type: ignore[type-arg]
    for headers, detail in (({}, "missing"), ({"Authorization": "Basic dXNlcjpwYXNz"}, "unsupported_scheme"),
                            ({"Authorization": "Token abc"}, "unsupported_scheme")):
        response = await client.get("/api/me", headers=headers)
        assert response.status == 401
        assert response.content_type == "application/problem+json"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="telerad"'
        assert await response.json() == {"type": "about:blank", "title": "Unauthorized", "status": 401,
                                          "detail": detail}


async def test_a_bad_token_is_a_401_invalid_token_naming_only_the_reason(client: TestClient, key: Key  # type: ignore[type-arg]
                                                                         ) -> None:
    now = int(time.time())
    for token, detail in ((issue(key, iat=now - 600, nbf=now - 600, exp=now - 60), "expired"),
                          ("", "malformed"), ("garbage", "malformed"), (issue(Key(key.kid)), "bad_signature")):
        response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 401
        assert response.content_type == "application/problem+json"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="telerad", error="invalid_token"'
        assert await response.json() == {"type": "about:blank", "title": "Unauthorized", "status": 401,
                                          "detail": detail}
        assert response.headers["X-Request-ID"]


async def test_require_roles_is_a_403_without_any_of_them(client: TestClient, key: Key) -> None:  # type: ignore[type-arg]
    refused = await client.get("/api/admin", headers=bearer(issue(key, roles=["radiologist", "viewer"])))
    assert refused.status == 403
    assert refused.content_type == "application/problem+json"
    assert (await refused.json())["title"] == "Forbidden"
    allowed = await client.get("/api/admin", headers=bearer(issue(key, roles=["viewer", "operator"])))
    assert allowed.status == 200


async def test_probes_and_public_prefixes_need_no_token(client: TestClient, key: Key) -> None:  # type: ignore[type-arg]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status == 200
    login = await client.post("/api/auth/login")
    assert login.status == 200 and await login.json() == {"principal": False}
    assert (await client.post("/api/auth/loginx")).status == 401
    assert (await client.get("/api/auth/login/../../api/me")).status == 401
    assert (await client.get("/.well-known%2F..%2Fapi%2Fme")).status == 401
    public_without_principal = await client.get("/.well-known/jwks.json")
    assert public_without_principal.status == 401
    assert public_without_principal.headers["WWW-Authenticate"] == 'Bearer realm="telerad"'


def test_require_roles_needs_a_role() -> None:
    with pytest.raises(ValueError):
        require_roles(None, *())  # type: ignore[arg-type]
