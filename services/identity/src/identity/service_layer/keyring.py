from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlmodel import col, select

from identity.adapters.keys import TokenIssuer, jwks, new_signing_key
from identity.adapters.oidc_tables import IdTokenKeyRow
from identity.adapters.tables import SigningKeyRow
from identity.domain.totp import SecretBox
from identity.service_layer.unit_of_work import IdentityUnitOfWork


class KeyRing:
    """The signing keys. A new key is published in the JWKS ``publish_lead`` before it signs anything,
    so every verifier (which refreshes its key set at most every 30 s on an unknown kid) knows it
    before it meets it; the key it replaces is retired then, and stays published while its tokens
    live. The active key is cached for a short while, so a rotation by another replica is picked up."""

    def __init__(self, box: SecretBox, issuer: str, keep_retired_for: timedelta, cache_seconds: float = 15,
                 publish_lead: timedelta = timedelta(seconds=60)) -> None:
        self.box = box
        self.issuer = issuer
        self.keep_retired_for = keep_retired_for
        self.cache_seconds = cache_seconds
        self.publish_lead = publish_lead
        self._issuer: TokenIssuer | None = None
        self._loaded_at = 0.0

    async def signer(self, uow: IdentityUnitOfWork, now: datetime) -> TokenIssuer:
        if self._issuer is None or time.monotonic() - self._loaded_at > self.cache_seconds:
            self._issuer = TokenIssuer(await self.active_key(uow, now), self.box, self.issuer)
            self._loaded_at = time.monotonic()
        return self._issuer

    async def _unretired(self, uow: IdentityUnitOfWork) -> list[SigningKeyRow]:
        return list((await uow.session.execute(
            select(SigningKeyRow).where(col(SigningKeyRow.retired_at).is_(None))
            .order_by(col(SigningKeyRow.created_at).desc()))).scalars())

    async def active_key(self, uow: IdentityUnitOfWork, now: datetime) -> SigningKeyRow:
        """The newest key published long enough; the very first key signs at once (nobody holds a token yet)."""
        keys = await self._unretired(uow)
        if not keys:
            key = new_signing_key(self.box, now)
            uow.session.add(key)
            await uow.commit()
            return key
        ready = [k for k in keys if _aware(k.created_at, now) <= now - self.publish_lead]
        active = ready[0] if ready else keys[-1]
        older = [k for k in keys if _aware(k.created_at, now) < _aware(active.created_at, now)]
        for key in older:
            key.retired_at = now
        if older:
            await uow.commit()
        return active

    async def rotate(self, uow: IdentityUnitOfWork, now: datetime) -> SigningKeyRow:
        """Publish a new key now; it signs from ``publish_lead`` on, when the current one retires."""
        key = new_signing_key(self.box, now)
        uow.session.add(key)
        await uow.commit()
        self._issuer = None
        return key

    async def due_for_rotation(self, uow: IdentityUnitOfWork, now: datetime, every: timedelta) -> bool:
        keys = await self._unretired(uow)
        return not keys or _aware(keys[0].created_at, now) + every <= now

    async def public_keys(self, uow: IdentityUnitOfWork, now: datetime) -> dict[str, object]:
        keys = list((await uow.session.execute(select(SigningKeyRow))).scalars())
        id_token_keys = list((await uow.session.execute(select(IdTokenKeyRow))).scalars())  # OpenID Connect, RS256
        return jwks([*keys, *id_token_keys], now, self.keep_retired_for)


def _aware(moment: datetime, like: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=like.tzinfo)
