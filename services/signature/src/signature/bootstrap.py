from __future__ import annotations

import asyncio
import base64
import binascii
import os
from datetime import timedelta
from pathlib import Path

from radcommon.auth import JwksClient, SqlRevocationList, TokenVerifier
from radcommon.config import CommonSettings
from radcommon.consumer import EventConsumer
from radcommon.db import Database
from radcommon.http import create_app
from radcommon.messaging import Bus
from radcommon.service import Service
from signature.adapters.secret_box import SecretBox
from signature.config import SignatureSettings
from signature.entrypoints import http
from signature.service_layer import commands
from signature.service_layer.handlers import EVENT_HANDLERS
from signature.service_layer.keyring import KeyRing
from signature.service_layer.unit_of_work import SignatureUnitOfWork

NAME = "signature"


class SignatureService(Service):
    keyring: KeyRing

    async def start(self) -> None:
        assert self.db is not None
        await commands.ensure_signing_key(SignatureUnitOfWork(self.db), self.keyring)  # before the first request
        await super().start()


def secret_box(settings: SignatureSettings, common: CommonSettings, embedded: bool) -> SecretBox:
    """SIGNATURE_SECRET_KEY, or (embedded only) a key generated once into the data directory."""
    if settings.secret_key:
        try:
            return SecretBox(base64.b64decode(settings.secret_key, validate=True))
        except (binascii.Error, ValueError) as error:
            raise RuntimeError("SIGNATURE_SECRET_KEY must be base64 of 32 random bytes") from error
    if not embedded:
        raise RuntimeError("SIGNATURE_SECRET_KEY must be set (base64 of 32 random bytes) when distributed")
    path = common.data_dir / "signature.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(base64.b64encode(SecretBox.generate_key()).decode())
    return SecretBox(base64.b64decode(path.read_text().strip()))


def build(common: CommonSettings, bus: Bus, *, embedded: bool, settings: SignatureSettings | None = None
          ) -> SignatureService:
    settings = settings or SignatureSettings()
    db = Database(settings.resolved_database_url(NAME, common, embedded))
    keyring = KeyRing(secret_box(settings, common, embedded), timedelta(days=settings.key_rotation_days))
    app = create_app(NAME, readiness={"database": db.ping, "bus": bus.ping})
    jwks = JwksClient(f"{common.identity_url.rstrip('/')}/.well-known/jwks.json")
    verifier = TokenVerifier(jwks, issuer=common.public_url, revocations=SqlRevocationList(db))
    app.middlewares.append(http.authentication(verifier))
    http.add_routes(app, db, keyring, verifier)

    def uow() -> SignatureUnitOfWork:
        return SignatureUnitOfWork(db)

    async def rotation() -> None:
        """The key ring's schedule: a new key every SIGNATURE_KEY_ROTATION_DAYS."""
        while True:
            await commands.rotate_if_due(uow(), keyring)
            await asyncio.sleep(settings.key_check_seconds)

    consumer = EventConsumer(f"{NAME}.events", EVENT_HANDLERS, uow)
    service = SignatureService(NAME, db, bus, app, Path(__file__).parent / "migrations",
                               http_host=settings.http_host, http_port=settings.http_port, consumers=[consumer],
                               background=[rotation])
    service.keyring = keyring
    service.on_stop.append(jwks.close)
    return service
