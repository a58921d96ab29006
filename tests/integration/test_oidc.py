"""identity as an OpenID Connect provider, driven the way OHIF's oidc-client-ts drives it.

Embedded platform; the main flow also distributed (PostgreSQL, RabbitMQ). The OIDC endpoints are called
where the gateway serves them once it proxies them, at identity's own address until then; the access token
is always used through the gateway.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pyotp
import pytest

from support.platform import DEMO_PASSWORD, platform_of
from telerad.platform import Platform

pytestmark = pytest.mark.integration

RADIOLOGIST = "radiologist@demo.telerad"
#: What oidc-client-ts reads from the discovery document for the code flow, sign-out and user info.
OIDC_CLIENT_TS_NEEDS = ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint",
                        "end_session_endpoint", "jwks_uri")

#: The flows here sign in more often than the gateway lets one address do by default.
GENEROUS = {"login_burst": 1000}


class Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "input" and attributes.get("name"):
            self.fields[attributes["name"] or ""] = attributes.get("value") or ""


def form_of(page: str) -> Inputs:
    inputs = Inputs()
    inputs.feed(page)
    return inputs


@dataclass
class Client:
    """A standard public client: PKCE S256, state and nonce, no secret."""

    http: aiohttp.ClientSession
    authority: str
    base: str
    discovery: dict[str, Any]

    @property
    def redirect_uri(self) -> str:
        return f"{self.authority}/viewer/callback"

    def endpoint(self, name: str) -> str:
        return self.discovery[name].replace(self.authority, self.base, 1)

    async def authorize(self, **overrides: str) -> tuple[aiohttp.ClientResponse, str, dict[str, str]]:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        params = {"client_id": "ohif", "redirect_uri": self.redirect_uri, "response_type": "code",
                  "scope": "openid profile email", "state": secrets.token_urlsafe(8),
                  "nonce": secrets.token_urlsafe(8), "code_challenge": challenge, "code_challenge_method": "S256",
                  **overrides}
        async with self.http.get(self.endpoint("authorization_endpoint"), params=params,
                                 allow_redirects=False) as response:
            await response.read()
            return response, verifier, params

    async def sign_in(self, email: str = RADIOLOGIST, password: str = DEMO_PASSWORD, **extra: str
                      ) -> tuple[str, str, dict[str, str]]:
        """The code, its verifier and the request, after submitting the sign-in page like a browser."""
        response, verifier, params = await self.authorize()
        assert response.status == 200 and response.content_type == "text/html"
        location = await self.submit(await response.text(), email=email, password=password, **extra)
        answer = parse_qs(urlsplit(location).query)
        assert location.startswith(self.redirect_uri + "?")
        assert answer["state"] == [params["state"]] and answer["iss"] == [self.authority]
        return answer["code"][0], verifier, params

    async def submit(self, page: str, **fields: str) -> str:
        form = form_of(page).fields
        async with self.http.post(self.endpoint("authorization_endpoint"), data={**form, **fields},
                                  allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            return response.headers["Location"]

    async def token(self, **form: str) -> tuple[int, dict[str, Any]]:
        async with self.http.post(self.endpoint("token_endpoint"), data={"client_id": "ohif", **form}) as response:
            assert response.headers["Cache-Control"] == "no-store"
            return response.status, await response.json()

    async def exchange(self, code: str, verifier: str) -> tuple[int, dict[str, Any]]:
        return await self.token(grant_type="authorization_code", code=code, redirect_uri=self.redirect_uri,
                                code_verifier=verifier)


@pytest.fixture
async def platform(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    async with platform_of(getattr(request, "param", "embedded"), tmp_path / "platform", gateway=GENEROUS) as running:
        yield running


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[Client]:
    authority = platform.common.public_url  # what OHIF's config names as the OIDC authority
    async with aiohttp.ClientSession() as http:
        base = platform.services["identity"].http_url
        async with http.get(f"{platform.gateway_url}/.well-known/openid-configuration") as response:
            if response.status == 200:  # the gateway proxies OIDC: go through it like a browser would
                base = platform.gateway_url
        async with http.get(f"{base}/.well-known/openid-configuration") as response:
            assert response.status == 200
            discovery = await response.json()
        yield Client(http, authority, base, discovery)


async def test_the_discovery_document_satisfies_oidc_client_ts(client: Client):
    document = client.discovery
    assert all(isinstance(document.get(name), str) for name in OIDC_CLIENT_TS_NEEDS)
    assert document["issuer"] == client.authority
    for name in OIDC_CLIENT_TS_NEEDS[1:]:
        assert document[name].startswith(client.authority + "/")
    assert "code" in document["response_types_supported"]
    assert "S256" in document["code_challenge_methods_supported"]
    assert "none" in document["token_endpoint_auth_methods_supported"]
    assert "RS256" in document["id_token_signing_alg_values_supported"]
    assert {"authorization_code", "refresh_token"} <= set(document["grant_types_supported"])
    assert "openid" in document["scopes_supported"] and document["subject_types_supported"] == ["public"]


@pytest.mark.parametrize("platform", ["embedded", "distributed"], indirect=True)
async def test_a_standard_client_signs_in_and_its_tokens_work(platform: Platform, client: Client):
    response, _, _ = await client.authorize()
    page = await response.text()
    assert response.status == 200 and "Sign in" in page and form_of(page).scripts == 0
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert {"request_id", "client_id", "redirect_uri", "state", "nonce", "code_challenge"} <= set(
        form_of(page).fields)

    code, verifier, params = await client.sign_in()
    status, tokens = await client.exchange(code, verifier)
    assert status == 200, tokens
    assert tokens["token_type"] == "Bearer" and 0 < tokens["expires_in"] <= 300
    assert tokens["scope"] == "openid profile email"

    async with client.http.get(f"{platform.gateway_url}/api/worklist",
                               headers={"Authorization": f"Bearer {tokens['access_token']}"}) as worklist:
        assert worklist.status == 200, await worklist.text()

    async with client.http.get(client.endpoint("jwks_uri")) as response:
        jwks = jwt.PyJWKSet.from_dict(await response.json())
    kid = jwt.get_unverified_header(tokens["id_token"])["kid"]
    [key] = [k for k in jwks.keys if k.key_id == kid]
    claims = jwt.decode(tokens["id_token"], key.key, algorithms=["RS256"], audience="ohif", issuer=client.authority)
    assert claims["nonce"] == params["nonce"] and claims["email"] == RADIOLOGIST
    assert claims["name"] == "Rita Radiologist"

    status, refreshed = await client.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert status == 200, refreshed
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    again = jwt.decode(refreshed["id_token"], key.key, algorithms=["RS256"], audience="ohif",
                       issuer=client.authority)
    assert (again["sub"], again["auth_time"]) == (claims["sub"], claims["auth_time"])

    status, reused = await client.exchange(code, verifier)
    assert (status, reused["error"]) == (400, "invalid_grant")

    async with client.http.get(client.endpoint("userinfo_endpoint"),
                               headers={"Authorization": f"Bearer {refreshed['access_token']}"}) as response:
        assert response.status == 401  # the reused code ended the session it had started
    status, after = await client.token(grant_type="refresh_token", refresh_token=refreshed["refresh_token"])
    assert (status, after["error"]) == (400, "invalid_grant")


async def test_userinfo_and_logout(platform: Platform, client: Client):
    code, verifier, _ = await client.sign_in()
    _, tokens = await client.exchange(code, verifier)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with client.http.get(client.endpoint("userinfo_endpoint"), headers=bearer) as response:
        assert response.status == 200
        info = await response.json()
    assert info["email"] == RADIOLOGIST and info["roles"] == ["radiologist"]
    assert info["organization"] == str(platform.common.default_organization_id)
    async with client.http.get(client.endpoint("userinfo_endpoint")) as response:
        assert response.status == 401 and "Bearer" in response.headers["WWW-Authenticate"]

    after_logout = f"{client.authority}/viewer/logout-redirect.html"
    async with client.http.get(client.endpoint("end_session_endpoint"), allow_redirects=False, params={
            "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://evil.test/",
            "state": "bye"}) as response:
        assert response.status == 400 and "Location" not in response.headers
    async with client.http.get(client.endpoint("end_session_endpoint"), allow_redirects=False, params={
            "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": after_logout,
            "state": "bye"}) as response:
        assert response.status == 302 and response.headers["Location"] == f"{after_logout}?state=bye"
    async with client.http.get(client.endpoint("userinfo_endpoint"), headers=bearer) as response:
        assert response.status == 401
    status, refused = await client.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert (status, refused["error"]) == (400, "invalid_grant")


async def test_a_wrong_verifier_or_redirect_uri_gets_nothing(client: Client):
    code, _, _ = await client.sign_in()
    status, refused = await client.exchange(code, secrets.token_urlsafe(48))
    assert (status, refused["error"]) == (400, "invalid_grant")

    response, _, _ = await client.authorize(redirect_uri="https://evil.test/callback")
    assert response.status == 400 and "Location" not in response.headers
    assert "redirect_uri" in await response.text()

    response, _, params = await client.authorize(code_challenge_method="plain")
    location = parse_qs(urlsplit(response.headers["Location"]).query)
    assert response.status == 302 and location["error"] == ["invalid_request"]
    assert location["state"] == [params["state"]]

    status, unknown = await client.token(grant_type="authorization_code", code="nope", client_id="stranger",
                                         redirect_uri=client.redirect_uri, code_verifier="x" * 43)
    assert (status, unknown["error"]) == (401, "invalid_client")
    status, unsupported = await client.token(grant_type="password", username=RADIOLOGIST, password=DEMO_PASSWORD)
    assert (status, unsupported["error"]) == (400, "unsupported_grant_type")


async def test_the_sign_in_page_handles_mistakes_cancel_and_a_second_factor(platform: Platform, client: Client):
    response, _, _ = await client.authorize()
    page = await response.text()
    async with client.http.post(client.endpoint("authorization_endpoint"), allow_redirects=False, data={
            **form_of(page).fields, "email": RADIOLOGIST, "password": "not the password"}) as wrong:
        assert wrong.status == 200 and "not right" in await wrong.text()
    async with client.http.post(client.endpoint("authorization_endpoint"), allow_redirects=False, data={
            **form_of(page).fields, "request_id": "forged", "email": RADIOLOGIST,
            "password": DEMO_PASSWORD}) as forged:
        assert forged.status == 400 and "Location" not in forged.headers
    location = await client.submit(page, cancel="1")
    assert parse_qs(urlsplit(location).query)["error"] == ["access_denied"]

    for attempt in range(6):  # the account's lockout applies here as at /api/auth/login
        async with client.http.post(client.endpoint("authorization_endpoint"), allow_redirects=False, data={
                **form_of(page).fields, "email": "manager@demo.telerad", "password": f"guess {attempt}"}) as guess:
            assert guess.status == (429 if attempt == 5 else 200)
            text = await guess.text()
    assert int(guess.headers["Retry-After"]) > 0 and "Too many" in text

    identity = platform.services["identity"].http_url
    async with client.http.post(f"{identity}/api/auth/login", json={"email": "technician@demo.telerad",
                                                                     "password": DEMO_PASSWORD}) as response:
        bearer = {"Authorization": f"Bearer {(await response.json())['access_token']}"}
    async with client.http.post(f"{identity}/api/auth/2fa/enrol", headers=bearer) as response:
        totp = pyotp.TOTP((await response.json())["secret"])
    async with client.http.post(f"{identity}/api/auth/2fa/verify", headers=bearer,
                                json={"code": totp.now()}) as response:
        backup_codes = (await response.json())["backup_codes"]

    response, verifier, _ = await client.authorize()
    async with client.http.post(client.endpoint("authorization_endpoint"), allow_redirects=False, data={
            **form_of(await response.text()).fields, "email": "technician@demo.telerad",
            "password": DEMO_PASSWORD}) as asked:
        second = await asked.text()
    assert asked.status == 200 and 'name="code"' in second
    location = await client.submit(second, email="technician@demo.telerad", password=DEMO_PASSWORD,
                                   code=backup_codes[0])
    status, tokens = await client.exchange(parse_qs(urlsplit(location).query)["code"][0], verifier)
    assert status == 200 and jwt.decode(tokens["id_token"], options={"verify_signature": False})["amr"] == [
        "pwd", "otp"]
