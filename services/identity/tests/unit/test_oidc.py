
import base64
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import jwt
import pyotp
import pytest
from sqlmodel import select

from identity.adapters.tables import SessionRow, UserRow
from identity.config_oidc import OidcClient, OidcSettings
from identity.domain.errors import InvalidCredentials, SecondFactorRequired, SessionEnded
from identity.domain.passwords import PasswordHasher
from identity.domain.totp import SecretBox
from identity.entrypoints import oidc_http
from identity.service_layer import handlers, oidc
from identity.service_layer.handlers import Dependencies
from identity.service_layer.keyring import KeyRing
from identity.service_layer.oidc import AuthorizationRequest, OidcTokens, Provider, TokenRequestError
from identity.service_layer.organizations import create_organization
from identity.service_layer.unit_of_work import IdentityUnitOfWork
from radcommon.auth import JwksClient, TokenVerifier, parse_jwks
from radcommon.contracts import RoleValues
from radcommon.db import Database
from support.sqlite import copy_migrated

T0 = datetime(2026, 3, 14, 8, 0, tzinfo=UTC)
ISSUER = "https://telerad.test"
PASSWORD = "a long shared test password"
ORG = UUID("00000000-0000-4000-8000-00000000000a")
CALLBACK = "https://telerad.test/viewer/callback"
AFTER_LOGOUT = "https://telerad.test/viewer/logout-redirect.html"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
CLIENTS = {"ohif": OidcClient(client_id="ohif", redirect_uris=(CALLBACK, "http://localhost:3000/callback"),
                              post_logout_redirect_uris=(AFTER_LOGOUT,)),
           "other": OidcClient(client_id="other", redirect_uris=("https://other.test/cb",))}
A = TypeVar("A")


def query(**overrides: str | None) -> dict[str, list[str]]:
    params: dict[str, str | None] = {
        "client_id": "ohif", "redirect_uri": CALLBACK, "response_type": "code", "scope": "openid profile email",
        "state": "s-1", "nonce": "n-1", "code_challenge": CHALLENGE, "code_challenge_method": "S256", **overrides}
    return {name: [value] for name, value in params.items() if value is not None}


@dataclass
class World:
    db: Database
    deps: Dependencies
    provider: Provider
    request: AuthorizationRequest = field(init=False)

    def __post_init__(self) -> None:
        self.request = oidc.authorization_request(query(), CLIENTS)

    async def run(self, work: Callable[[IdentityUnitOfWork], Awaitable[A]]) -> A:
        async with IdentityUnitOfWork(self.db) as uow:
            result = await work(uow)
            uow.session.expunge_all()
            return result

    async def code(self, email: str = "radiologist@a.test", now: datetime = T0, **kwargs: Any) -> str:
        location = await self.run(lambda uow: oidc.sign_in(
            uow, self.deps, self.provider, kwargs.pop("request", self.request), email=email, password=PASSWORD,
            totp_code=kwargs.get("totp_code"), backup_code=None, address="10.0.0.1", user_agent="test", now=now))
        answer = parse_qs(urlsplit(location).query)
        assert location.startswith(CALLBACK + "?")
        assert answer["state"] == ["s-1"] and answer["iss"] == [ISSUER]
        return answer["code"][0]

    async def exchange(self, code: str, verifier: str = VERIFIER, now: datetime = T0, client_id: str = "ohif",
                       redirect_uri: str = CALLBACK) -> OidcTokens:
        return await self.run(lambda uow: oidc.exchange_code(
            uow, self.deps, self.provider, client_id=client_id, code=code, redirect_uri=redirect_uri,
            code_verifier=verifier, now=now))

    async def refresh(self, refresh_token: str, now: datetime = T0, client_id: str = "ohif",
                      scope: str | None = None) -> OidcTokens:
        return await self.run(lambda uow: oidc.refresh(uow, self.deps, self.provider, client_id=client_id,
                                                       refresh_token=refresh_token, scope=scope, now=now))

    async def jwks(self, now: datetime = T0) -> dict[str, Any]:
        return await self.run(lambda uow: self.deps.keyring.public_keys(uow, now))  # type: ignore[return-value]

    async def id_claims(self, id_token: str, now: datetime = T0) -> dict[str, Any]:
        keys = {k["kid"]: k for k in (await self.jwks(now))["keys"] if k["kty"] == "RSA"}
        header = jwt.get_unverified_header(id_token)
        assert header["alg"] == "RS256"
        claims: dict[str, Any] = jwt.decode(id_token, jwt.PyJWK(keys[header["kid"]]).key, algorithms=["RS256"],
                                            audience="ohif", issuer=ISSUER,
                                            options={"verify_exp": False, "verify_iat": False})
        return claims

    async def session(self, session_id: str) -> SessionRow:
        found = await self.run(lambda uow: uow.session.get(SessionRow, UUID(session_id)))
        assert found is not None
        return found


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    db = Database(f"sqlite+aiosqlite:///{await copy_migrated('identity', tmp_path / 'identity.db')}")
    box = SecretBox(SecretBox.generate_key())
    deps = Dependencies(keyring=KeyRing(box, ISSUER, timedelta(minutes=10)), box=box,
                        hasher=PasswordHasher(time_cost=1, memory_cost_kib=1024, parallelism=1),
                        access_lifetime=timedelta(minutes=5), step_up_lifetime=timedelta(minutes=2),
                        refresh_lifetime=timedelta(days=1))
    provider = Provider(issuer=ISSUER, clients=CLIENTS, box=box, keys=oidc.IdTokenKeys(box))
    async with IdentityUnitOfWork(db) as uow:
        await create_organization(uow, deps, organization_id=ORG, name="A", slug="a", password=PASSWORD, now=T0,
                                  users=[("radiologist@a.test", "Rita Radiologist", [RoleValues.RADIOLOGIST]),
                                         ("admin@a.test", "Ada Admin", [RoleValues.ADMIN])])
    try:
        yield World(db, deps, provider)
    finally:
        await db.dispose()


def test_discovery_lists_what_oidc_client_ts_looks_up():
    document = oidc.discovery_document(ISSUER)
    assert document["issuer"] == ISSUER
    assert document["authorization_endpoint"] == f"{ISSUER}/oidc/authorize"
    assert document["token_endpoint"] == f"{ISSUER}/oidc/token"
    assert document["userinfo_endpoint"] == f"{ISSUER}/oidc/userinfo"
    assert document["end_session_endpoint"] == f"{ISSUER}/oidc/logout"
    assert document["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert "RS256" in document["id_token_signing_alg_values_supported"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["response_types_supported"] == ["code"]


def test_a_valid_authorization_request_is_kept_with_its_granted_scope():
    request = oidc.authorization_request(query(scope="openid email offline_access"), CLIENTS)
    assert (request.client_id, request.redirect_uri, request.state, request.nonce) == ("ohif", CALLBACK, "s-1", "n-1")
    assert request.granted_scope == "openid email"
    assert request.form_fields()["code_challenge_method"] == "S256"


@pytest.mark.parametrize("params", [query(client_id="nobody"), query(client_id=None), query(redirect_uri=None),
                                    query(redirect_uri=CALLBACK + "/"), query(redirect_uri="https://evil.test/cb"),
                                    query(redirect_uri="https://other.test/cb"),
                                    {**query(), "redirect_uri": [CALLBACK, "https://evil.test/cb"]}])
def test_an_unknown_client_or_redirect_uri_is_never_redirected_to(params: dict[str, list[str]]):
    with pytest.raises(oidc.UntrustedRedirect):
        oidc.authorization_request(params, CLIENTS)


@pytest.mark.parametrize(("params", "error"), [
    (query(response_type="token"), "unsupported_response_type"),
    (query(response_type=None), "unsupported_response_type"),
    (query(scope="profile email"), "invalid_scope"),
    (query(code_challenge=None, code_challenge_method=None), "invalid_request"),
    (query(code_challenge_method="plain", code_challenge=VERIFIER), "invalid_request"),
    (query(code_challenge_method=None), "invalid_request"),
    (query(code_challenge="short"), "invalid_request"),
    (query(response_mode="fragment"), "invalid_request"),
    (query(prompt="none"), "login_required"),
    (query(request="eyJ..."), "request_not_supported"),
    ({**query(), "scope": ["openid", "openid email"]}, "invalid_request"),
    (query(state="x" * 2000), "invalid_request"),
])
def test_other_errors_go_back_to_the_client_with_its_state(params: dict[str, list[str]], error: str):
    with pytest.raises(oidc.AuthorizationDenied) as denied:
        oidc.authorization_request(params, CLIENTS)
    answer = parse_qs(urlsplit(denied.value.location(ISSUER)).query)
    assert answer["error"] == [error] and answer["iss"] == [ISSUER]
    assert answer.get("state") == params["state"]  # exactly as received, however long (RFC 6749 §4.1.2.1)


def test_the_sign_in_page_escapes_what_it_echoes_and_runs_no_script():
    box = SecretBox(SecretBox.generate_key())
    provider = Provider(issuer=ISSUER, clients=CLIENTS, box=box, keys=oidc.IdTokenKeys(box))
    hostile = '"><script>alert(1)</script>'
    request = oidc.authorization_request(query(state=hostile, nonce=hostile), CLIENTS)
    page = oidc_http._sign_in_page(provider, request, email=hostile, second_factor=True, message=hostile)
    assert page.text and "<script" not in page.text and page.text.count("&lt;script&gt;") == 4
    assert 'name="code"' in page.text and 'name="password"' in page.text and 'name="request_id"' in page.text
    style = re.search(r"<style>(.*?)</style>", page.text, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Frame-Options"] == "DENY"


def test_the_sign_in_form_id_vouches_for_its_request_for_a_while():
    box = SecretBox(SecretBox.generate_key())
    request = oidc.authorization_request(query(), CLIENTS)
    form_id = oidc.sign_in_form_id(box, request, T0)
    oidc.check_sign_in_form_id(box, form_id, request, T0 + timedelta(minutes=14), timedelta(minutes=15))
    with pytest.raises(oidc.SignInFormExpired):
        oidc.check_sign_in_form_id(box, form_id, request, T0 + timedelta(minutes=16), timedelta(minutes=15))
    altered = oidc.authorization_request(query(redirect_uri="http://localhost:3000/callback"), CLIENTS)
    for wrong_request, wrong_id in ((altered, form_id), (request, form_id[:-2]), (request, ""),
                                    (request, oidc.sign_in_form_id(SecretBox(SecretBox.generate_key()), request, T0))):
        with pytest.raises(oidc.InvalidSignInForm):
            oidc.check_sign_in_form_id(box, wrong_id, wrong_request, T0, timedelta(minutes=15))


async def test_a_code_buys_the_sessions_tokens_and_a_signed_id_token(world: World):
    code = await world.code()
    tokens = await world.exchange(code)

    claims = await world.id_claims(tokens.id_token)
    session = await world.session(claims["sid"])
    assert claims["sub"] == str(session.user_id) and claims["nonce"] == "n-1"
    assert (claims["email"], claims["name"]) == ("radiologist@a.test", "Rita Radiologist")
    assert claims["auth_time"] == int(T0.timestamp()) and claims["exp"] == int((T0 + timedelta(minutes=5)).timestamp())
    expected_at_hash = base64.urlsafe_b64encode(hashlib.sha256(tokens.access_token.encode()).digest()[:16])
    assert claims["at_hash"] == expected_at_hash.rstrip(b"=").decode()
    assert tokens.scope == "openid profile email"

    jwks = await world.jwks()
    assert {key["kty"] for key in jwks["keys"]} == {"OKP", "RSA"}
    assert len(parse_jwks(jwks)) == 1  # services keep verifying access tokens with the Ed25519 key only
    principal = await TokenVerifier(JwksClient.static(jwks), issuer=ISSUER, leeway_seconds=10**9).verify(
        tokens.access_token)
    assert str(principal.session_id) == claims["sid"] and principal.roles == {RoleValues.RADIOLOGIST}


async def test_a_code_works_once_and_a_second_use_ends_its_session(world: World):
    code = await world.code()
    tokens = await world.exchange(code)
    with pytest.raises(TokenRequestError) as refused:
        await world.exchange(code)
    assert refused.value.error == "invalid_grant" and "already used" in refused.value.description
    sid = (await world.id_claims(tokens.id_token))["sid"]
    assert (await world.session(sid)).end_reason == "logout"
    with pytest.raises(TokenRequestError):
        await world.refresh(tokens.refresh_token)


@pytest.mark.parametrize(("change", "description"), [
    ({"verifier": VERIFIER[:-1] + "Y"}, "code_verifier"), ({"verifier": "short"}, "code_verifier"),
    ({"now": T0 + timedelta(seconds=60)}, "expired"), ({"client_id": "other"}, "another client"),
    ({"redirect_uri": "http://localhost:3000/callback"}, "redirect_uri"),
])
async def test_a_code_presented_wrongly_is_spent_and_its_session_ended(world: World, change: dict[str, Any],
                                                                       description: str):
    code = await world.code()
    with pytest.raises(TokenRequestError) as refused:
        await world.exchange(code, **change)
    assert refused.value.error == "invalid_grant" and description in refused.value.description
    with pytest.raises(TokenRequestError) as again:
        await world.exchange(code)
    assert "already used" in again.value.description
    ended = await world.run(lambda uow: uow.session.execute(select(SessionRow)))
    assert all(s.ended_at is not None for s in ended.scalars())


async def test_unknown_codes_and_clients_are_refused(world: World):
    with pytest.raises(TokenRequestError) as unknown:
        await world.exchange("not-a-code")
    assert unknown.value.error == "invalid_grant"
    with pytest.raises(TokenRequestError) as client:
        await world.exchange(await world.code(), client_id="stranger")
    assert (client.value.error, client.value.status) == ("invalid_client", 401)


async def test_a_refresh_brings_new_tokens_and_an_id_token_of_the_same_sign_in(world: World):
    first = await world.exchange(await world.code())
    later = T0 + timedelta(minutes=4)
    second = await world.refresh(first.refresh_token, now=later)
    before, after = await world.id_claims(first.id_token), await world.id_claims(second.id_token)
    assert second.access_token != first.access_token and second.refresh_token != first.refresh_token
    assert (after["sub"], after["sid"], after["auth_time"], after["nonce"]) == (
        before["sub"], before["sid"], before["auth_time"], before["nonce"])
    assert after["iat"] == int(later.timestamp())
    narrowed = await world.refresh(second.refresh_token, now=later, scope="openid")
    assert narrowed.scope == "openid"

    with pytest.raises(TokenRequestError) as reused:
        await world.refresh(first.refresh_token, now=later)
    assert reused.value.error == "invalid_grant"
    assert (await world.session(before["sid"])).end_reason == "refresh_token_reuse"


async def test_a_refresh_token_stays_with_its_client_and_scope(world: World):
    tokens = await world.exchange(await world.code())
    for kwargs, error in (({"client_id": "other"}, "invalid_grant"), ({"scope": "openid admin"}, "invalid_scope"),
                          ({"client_id": "stranger"}, "invalid_client")):
        with pytest.raises(TokenRequestError) as refused:
            await world.refresh(tokens.refresh_token, **kwargs)
        assert refused.value.error == error
    plain = await world.run(lambda uow: handlers.login(uow, world.deps, email="admin@a.test", password=PASSWORD,
                                                       totp_code=None, backup_code=None, address="10.0.0.1",
                                                       user_agent="test", now=T0))
    with pytest.raises(TokenRequestError) as not_oidc:
        await world.refresh(plain.refresh_token)
    assert "not issued to this client" in not_oidc.value.description
    assert (await world.refresh(tokens.refresh_token)).refresh_token


async def test_sign_in_keeps_the_ordinary_rules(world: World):
    with pytest.raises(InvalidCredentials):
        await world.run(lambda uow: oidc.sign_in(uow, world.deps, world.provider, world.request,
                                                 email="radiologist@a.test", password="wrong password here",
                                                 totp_code=None, backup_code=None, address="10.0.0.1",
                                                 user_agent="test", now=T0))
    user = await world.run(lambda uow: uow.session.execute(select(UserRow).where(UserRow.email ==
                                                                                   "radiologist@a.test")))
    assert user.scalar_one().failed_logins == 1

    user_id = (await world.run(lambda uow: uow.session.execute(
        select(UserRow.id).where(UserRow.email == "radiologist@a.test")))).scalar_one()
    enrolment = await world.run(lambda uow: handlers.begin_totp_enrolment(uow, world.deps, user_id=user_id))
    totp = pyotp.TOTP(enrolment.secret)
    await world.run(lambda uow: handlers.confirm_totp_enrolment(uow, world.deps, user_id=user_id,
                                                                code=totp.at(T0), now=T0))
    later = T0 + timedelta(minutes=1)
    with pytest.raises(SecondFactorRequired):
        await world.code(now=later)
    tokens = await world.exchange(await world.code(now=later, totp_code=totp.at(later)), now=later)
    assert (await world.id_claims(tokens.id_token))["amr"] == ["pwd", "otp"]


async def test_userinfo_describes_the_user_of_a_live_session(world: World):
    tokens = await world.exchange(await world.code())
    sid = UUID((await world.id_claims(tokens.id_token))["sid"])
    info = await world.run(lambda uow: oidc.userinfo(uow, sid, T0))
    assert info["email"] == "radiologist@a.test" and info["name"] == "Rita Radiologist"
    assert (info["organization"], info["roles"]) == (str(ORG), ["radiologist"])
    await world.run(lambda uow: handlers.logout(uow, world.deps, session_id=sid, now=T0))
    with pytest.raises(SessionEnded):
        await world.run(lambda uow: oidc.userinfo(uow, sid, T0))


async def end_session(world: World, **kwargs: Any) -> str | None:
    arguments: dict[str, Any] = {"id_token_hint": None, "client_id": None, "post_logout_redirect_uri": None,
                                 "state": None, **kwargs}
    return await world.run(lambda uow: oidc.end_session(uow, world.deps, world.provider, now=T0, **arguments))


async def test_logout_ends_the_hinted_session_and_returns_to_a_registered_address(world: World):
    tokens = await world.exchange(await world.code())
    sid = (await world.id_claims(tokens.id_token))["sid"]
    for refused in ({"post_logout_redirect_uri": "https://evil.test/"},
                    {"post_logout_redirect_uri": AFTER_LOGOUT, "client_id": "other"},
                    {"id_token_hint": tokens.id_token[:-4] + "AAAA"},
                    {"id_token_hint": "not a token"}):
        with pytest.raises(oidc.LogoutRefused):
            await end_session(world, id_token_hint=refused.pop("id_token_hint", tokens.id_token), **refused)
        assert (await world.session(sid)).ended_at is None

    location = await end_session(world, id_token_hint=tokens.id_token, post_logout_redirect_uri=AFTER_LOGOUT,
                                 state="bye")
    assert location == f"{AFTER_LOGOUT}?state=bye"
    assert (await world.session(sid)).end_reason == "logout"
    assert await end_session(world, id_token_hint=tokens.id_token) is None  # again: nothing left to end


async def test_a_hint_signed_by_another_key_is_refused(world: World):
    tokens = await world.exchange(await world.code())
    claims = await world.id_claims(tokens.id_token)
    stranger = oidc.new_id_token_key(world.provider.box, T0)
    forged = oidc.IdTokenSigner(stranger, world.provider.box)
    forged.kid = jwt.get_unverified_header(tokens.id_token)["kid"]
    with pytest.raises(oidc.LogoutRefused):
        await end_session(world, id_token_hint=forged.sign(claims))


async def test_rotated_id_token_keys_stay_published_while_their_tokens_live(world: World):
    keys = world.provider.keys
    first = await world.run(lambda uow: keys.active_key(uow, T0))
    assert not await world.run(lambda uow: keys.due_for_rotation(uow, T0 + timedelta(days=29), timedelta(days=30)))
    assert await world.run(lambda uow: keys.due_for_rotation(uow, T0 + timedelta(days=30), timedelta(days=30)))
    second = await world.run(lambda uow: keys.rotate(uow, T0))
    rsa = [k["kid"] for k in (await world.jwks(T0 + timedelta(minutes=5)))["keys"] if k["kty"] == "RSA"]
    assert sorted(rsa) == sorted([first.kid, second.kid])
    rsa = [k["kid"] for k in (await world.jwks(T0 + timedelta(minutes=11)))["keys"] if k["kty"] == "RSA"]
    assert rsa == [second.kid]


def test_settings_default_to_the_ohif_client_and_read_clients_as_json(monkeypatch: pytest.MonkeyPatch):
    [ohif] = OidcSettings().registered_clients("https://pacs.example.org/").values()
    assert ohif.client_id == "ohif"
    assert ohif.redirect_uris == ("https://pacs.example.org/viewer/callback", "http://localhost:3000/callback")
    monkeypatch.setenv("IDENTITY_OIDC_CLIENTS", '[{"client_id": "viewer", "redirect_uris": ["https://v.test/cb"],'
                                                ' "post_logout_redirect_uris": ["https://v.test/"]}]')
    monkeypatch.setenv("IDENTITY_OIDC_AUTHORIZATION_CODE_SECONDS", "30")
    settings = OidcSettings()
    assert list(settings.registered_clients("https://x.test")) == ["viewer"]
    assert settings.authorization_code_lifetime == timedelta(seconds=30)
    with pytest.raises(ValueError):
        OidcClient(client_id="x", redirect_uris=("https://v.test/cb#fragment",))
    with pytest.raises(ValueError):
        OidcClient(client_id="x", redirect_uris=("/relative/callback",))
