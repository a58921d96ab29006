from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlmodel import col, select

from identity.adapters.keys import TokenIssuer, jwks, new_signing_key
from identity.adapters.tables import SigningKeyRow
from identity.domain.totp import SecretBox
from identity.service_layer.unit_of_work import IdentityUnitOfWork


class KeyRing:
    """The active signing key, cached for a minute so that a rotation by another replica is picked up."""

    def __init__(self, box: SecretBox, issuer: str, keep_retired_for: timedelta, cache_seconds: float = 60) -> None:
        self.box = box
        self.issuer = issuer
        self.keep_retired_for = keep_retired_for
        self.cache_seconds = cache_seconds
        self._issuer: TokenIssuer | None = None
        self._loaded_at = 0.0

    async def signer(self, uow: IdentityUnitOfWork, now: datetime) -> TokenIssuer:
        if self._issuer is None or time.monotonic() - self._loaded_at > self.cache_seconds:
            self._issuer = TokenIssuer(await self.active_key(uow, now), self.box, self.issuer)
            self._loaded_at = time.monotonic()
        return self._issuer

    async def active_key(self, uow: IdentityUnitOfWork, now: datetime) -> SigningKeyRow:
        key = (await uow.session.execute(
            select(SigningKeyRow).where(col(SigningKeyRow.retired_at).is_(None))
            .order_by(col(SigningKeyRow.created_at).desc()).limit(1))).scalar_one_or_none()
        if key is None:
            key = new_signing_key(self.box, now)
            uow.session.add(key)
            await uow.commit()
        return key

    async def rotate(self, uow: IdentityUnitOfWork, now: datetime) -> SigningKeyRow:
        for old in (await uow.session.execute(
                select(SigningKeyRow).where(col(SigningKeyRow.retired_at).is_(None)))).scalars():
            old.retired_at = now
        key = new_signing_key(self.box, now)
        uow.session.add(key)
        await uow.commit()
        self._issuer = None
        return key

    async def due_for_rotation(self, uow: IdentityUnitOfWork, now: datetime, every: timedelta) -> bool:
        key = await self.active_key(uow, now)
        created = key.created_at if key.created_at.tzinfo else key.created_at.replace(tzinfo=now.tzinfo)
        return created + every <= now

    async def public_keys(self, uow: IdentityUnitOfWork, now: datetime) -> dict[str, object]:
        keys = list((await uow.session.execute(select(SigningKeyRow))).scalars())
        return jwks(keys, now, self.keep_retired_for)
