"""The key ring: one key signs at a time; rotated keys retire, revoked keys stop being trusted, none is deleted.

Methods run inside the caller's unit of work and leave the commit to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signature.adapters.keys import new_signing_key, open_private_key
from signature.adapters.repository import as_utc
from signature.adapters.secret_box import SecretBox
from signature.adapters.tables import SigningKeyRow
from signature.domain.model import KeyAlreadyRevoked, NoSigningKey, UnknownKey
from signature.service_layer.unit_of_work import SignatureUnitOfWork

SCHEDULE = "scheduled rotation"


@dataclass(frozen=True)
class Actor:
    """Who changed the key ring: a person (id, organisation, printed name), or the schedule (no ids)."""

    user_id: UUID | None
    organization_id: UUID | None
    name: str

    @property
    def record(self) -> tuple[UUID | None, UUID | None, str]:
        return self.user_id, self.organization_id, self.name


SCHEDULED = Actor(None, None, SCHEDULE)


class KeyRing:
    def __init__(self, box: SecretBox, rotate_every: timedelta) -> None:
        self.box = box
        self.rotate_every = rotate_every
        self._private: dict[str, Ed25519PrivateKey] = {}  # a kid's private key never changes

    async def signing_key(self, uow: SignatureUnitOfWork) -> tuple[str, Ed25519PrivateKey]:
        await uow.lock_key_ring(exclusive=False)
        keys = await uow.keys.signing()
        if not keys:
            raise NoSigningKey("the signature service has no key to sign with yet")
        row = keys[0]
        if row.kid not in self._private:
            self._private[row.kid] = open_private_key(row, self.box)
        return row.kid, self._private[row.kid]

    async def ensure_key(self, uow: SignatureUnitOfWork, now: datetime) -> SigningKeyRow:
        """The key that signs, made first when there is none (a new service, or every key revoked)."""
        await uow.lock_key_ring(exclusive=True)
        keys = await uow.keys.signing()
        return keys[0] if keys else self._new_key(uow, now, SCHEDULED, "first key")

    async def rotate(self, uow: SignatureUnitOfWork, now: datetime, actor: Actor) -> SigningKeyRow:
        """A new key signs from now on; the ones before it retire (they still verify)."""
        await uow.lock_key_ring(exclusive=True)
        for old in await uow.keys.signing():
            old.retired_at = now
            uow.keys.record(old.kid, "retired", now, actor.record, "rotation")
        return self._new_key(uow, now, actor, "rotation")

    async def rotate_if_due(self, uow: SignatureUnitOfWork, now: datetime) -> SigningKeyRow | None:
        await uow.lock_key_ring(exclusive=True)
        keys = await uow.keys.signing()
        if keys and as_utc(keys[0].created_at) + self.rotate_every > now:
            return None
        return await self.rotate(uow, now, SCHEDULED)

    async def revoke(self, uow: SignatureUnitOfWork, kid: str, reason: str, now: datetime, actor: Actor
                     ) -> SigningKeyRow:
        """Stop trusting a key; when it was the one signing, a new key takes over at once."""
        await uow.lock_key_ring(exclusive=True)
        row = await uow.keys.get(kid)
        if row is None:
            raise UnknownKey(f"no key {kid!r} in the key ring")
        if row.revoked_at is not None:
            raise KeyAlreadyRevoked(f"key {kid} was revoked already")
        was_signing = row.retired_at is None
        row.revoked_at, row.revocation_reason = now, reason[:500]
        if was_signing:
            row.retired_at = now
        uow.keys.record(kid, "revoked", now, actor.record, reason)
        self._private.pop(kid, None)
        if was_signing and not await uow.keys.signing():
            self._new_key(uow, now, actor, f"replaces revoked key {kid}")
        return row

    def _new_key(self, uow: SignatureUnitOfWork, now: datetime, actor: Actor, reason: str) -> SigningKeyRow:
        row = new_signing_key(self.box, now)
        uow.keys.add(row)
        uow.keys.record(row.kid, "created", now, actor.record, reason)
        return row
