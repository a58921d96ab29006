from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from identity.adapters.mail import LogMailer, Mailer, SmtpMailer, SmtpSettings
from identity.adapters.session_revocations import SessionTableRevocations
from identity.config import IdentitySettings
from identity.config_oidc import OidcSettings
from identity.domain.passwords import PasswordHasher
from identity.domain.totp import SecretBox
from identity.entrypoints import admin_http, http, oidc_http
from identity.service_layer.admin import Administration
from identity.service_layer.handlers import Dependencies
from identity.service_layer.keyring import KeyRing
from identity.service_layer.oidc import IdTokenKeys, Provider
from identity.service_layer.organizations import create_organization, seed_demo_organization
from identity.service_layer.unit_of_work import IdentityUnitOfWork
from radcommon.auth import JwksClient, TokenVerifier, auth_middleware
from radcommon.config import CommonSettings
from radcommon.db import Database
from radcommon.http import create_app
from radcommon.messaging import Bus
from radcommon.service import Service

NAME = "identity"
LEEWAY = timedelta(seconds=30)


class IdentityService(Service):
    deps: Dependencies
    jwks_client: JwksClient

    async def start(self) -> None:
        async with IdentityUnitOfWork(self.db) as uow:  # type: ignore[arg-type]
            await self.deps.keyring.active_key(uow, datetime.now(UTC))  # before the rotation task looks
        await super().start()
        self.jwks_client.url = f"{self.http_url}/.well-known/jwks.json"

    async def seed_demo(self, organization_id: object, password: str) -> bool:
        async with IdentityUnitOfWork(self.db) as uow:  # type: ignore[arg-type]
            return await seed_demo_organization(uow, self.deps, organization_id=organization_id,  # type: ignore[arg-type]
                                                password=password, now=datetime.now(UTC))

    async def create_organization(self, **kwargs: Any) -> bool:
        """For seeding and tests: see :func:`identity.service_layer.organizations.create_organization`."""
        async with IdentityUnitOfWork(self.db) as uow:  # type: ignore[arg-type]
            return await create_organization(uow, self.deps, now=datetime.now(UTC), **kwargs)

    async def stop(self) -> None:
        await self.jwks_client.close()
        await super().stop()


def secret_box(settings: IdentitySettings, common: CommonSettings, embedded: bool) -> SecretBox:
    if settings.secret_key:
        return SecretBox(base64.b64decode(settings.secret_key))
    if not embedded:
        raise RuntimeError("IDENTITY_SECRET_KEY must be set (base64 of 32 random bytes) when distributed")
    path = common.data_dir / "identity.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(base64.b64encode(SecretBox.generate_key()).decode())
    return SecretBox(base64.b64decode(path.read_text().strip()))


def mailer(settings: IdentitySettings) -> Mailer:
    if not settings.smtp_host:
        return LogMailer()
    return SmtpMailer(SmtpSettings(
        host=settings.smtp_host, port=settings.smtp_port, username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls and not settings.smtp_ssl, ssl=settings.smtp_ssl, sender=settings.smtp_sender,
        timeout_seconds=settings.smtp_timeout_seconds))


def build(common: CommonSettings, bus: Bus, *, embedded: bool, settings: IdentitySettings | None = None
          ) -> IdentityService:
    settings = settings or IdentitySettings()
    db = Database(settings.resolved_database_url(NAME, common, embedded))
    box = secret_box(settings, common, embedded)
    keep_retired = max(settings.access_token_lifetime, settings.step_up_token_lifetime) + LEEWAY
    deps = Dependencies(
        keyring=KeyRing(box, common.public_url, keep_retired), box=box, hasher=PasswordHasher(),
        access_lifetime=settings.access_token_lifetime, step_up_lifetime=settings.step_up_token_lifetime,
        refresh_lifetime=timedelta(days=settings.refresh_token_days))
    jwks_client = JwksClient(None, min_refresh_seconds=1)
    verifier = TokenVerifier(jwks_client, issuer=common.public_url, revocations=SessionTableRevocations(db))
    app = create_app(NAME, readiness={"database": db.ping, "bus": bus.ping})
    app.middlewares.append(auth_middleware(verifier, public=(*http.PUBLIC, *admin_http.PUBLIC,
                                                                   *oidc_http.PUBLIC)))

    def uow() -> IdentityUnitOfWork:
        return IdentityUnitOfWork(db)

    http.add_routes(app, deps, uow, frozenset(ip_network(n) for n in settings.trusted_proxies))
    administration = Administration(deps, mailer(settings), common.public_url,
                                    invitation_lifetime=settings.invitation_lifetime,
                                    reset_lifetime=settings.password_reset_lifetime)
    admin_http.add_admin_routes(app, administration, uow)
    oidc_settings = OidcSettings()
    id_token_keys = IdTokenKeys(box)
    oidc_http.add_oidc_routes(app, Provider(
        issuer=common.public_url, clients=oidc_settings.registered_clients(common.public_url), box=box,
        keys=id_token_keys, code_lifetime=oidc_settings.authorization_code_lifetime,
        form_lifetime=oidc_settings.login_form_lifetime))

    async def rotate_keys_on_schedule() -> None:
        every = timedelta(days=settings.key_rotation_days)
        while True:
            async with uow() as unit:
                if await deps.keyring.due_for_rotation(unit, datetime.now(UTC), every):
                    await deps.keyring.rotate(unit, datetime.now(UTC))
                if await id_token_keys.due_for_rotation(unit, datetime.now(UTC), every):
                    await id_token_keys.rotate(unit, datetime.now(UTC))
            await asyncio.sleep(3600)

    service = IdentityService(NAME, db, bus, app, Path(__file__).parent / "migrations",
                              http_host=settings.http_host, http_port=settings.http_port,
                              background=[rotate_keys_on_schedule])
    service.deps = deps
    service.on_stop.append(administration.drain)
    service.jwks_client = jwks_client
    return service
