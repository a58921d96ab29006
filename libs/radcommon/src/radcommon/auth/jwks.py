"""Identity's public signing keys, fetched from its JWK set (RFC 7517) and cached.

Only Ed25519 signing keys (RFC 8037 ``OKP``) are kept; anything else in the set is ignored. A
``kid`` missing from the cache triggers a refresh, at most one per ``min_refresh_seconds`` however
many forged ``kid`` values arrive; a failed fetch keeps the keys already held. A set older than
``max_age_seconds`` is refreshed in the background, so a key identity withdraws stops verifying.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger(__name__)

_MAX_JWKS_BYTES = 256 * 1024
#: While no key is held every token fails anyway; retry sooner than the flood limit (still bounded).
_EMPTY_RETRY_SECONDS = 1.0


class JwksClient:
    def __init__(self, url: str | None, *, min_refresh_seconds: float = 30, timeout: float = 5,
                 max_age_seconds: float | None = 300) -> None:
        self.url = url
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout = timeout
        self.max_age_seconds = max_age_seconds
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._attempted_at: float | None = None
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[bool] | None = None

    @classmethod
    def static(cls, jwks: Mapping[str, Any]) -> JwksClient:
        """A fixed key set that is never fetched (tests, embedded mode)."""
        client = cls(None)
        client._keys = parse_jwks(jwks)
        if not client._keys:
            raise ValueError("the JWK set holds no Ed25519 signing key")
        return client

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    async def key(self, kid: str) -> Ed25519PublicKey | None:
        """The key named ``kid``, refreshing the set once when it is unknown; None when still unknown."""
        if (key := self._keys.get(kid)) is not None:
            if self._stale():
                self._refresh_in_background()
            return key
        if self._may_refresh() or self._lock.locked():  # locked: a fetch under way may bring it; wait for it
            await self.refresh()
        return self._keys.get(kid)

    async def refresh(self) -> bool:
        """Fetch the set now unless one was fetched lately; True when a new set replaced the old."""
        if self.url is None:
            return False
        async with self._lock:
            if not self._may_refresh():  # a caller ahead of us in the lock just fetched
                return False
            self._attempted_at = time.monotonic()
            try:
                keys = await self._fetch(self.url)
            except Exception as error:
                log.warning("JWKS fetch from %s failed; keeping %d cached keys: %s",
                            self.url, len(self._keys), error)
                return False
            if not keys:
                log.warning("JWKS at %s holds no Ed25519 signing key; keeping %d cached keys",
                            self.url, len(self._keys))
                return False
            self._keys = keys
            self._loaded_at = time.monotonic()
            return True

    async def close(self) -> None:
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background

    def _may_refresh(self) -> bool:
        if self.url is None:
            return False
        if self._attempted_at is None:
            return True
        interval = self.min_refresh_seconds if self._keys else min(self.min_refresh_seconds, _EMPTY_RETRY_SECONDS)
        return time.monotonic() - self._attempted_at >= interval

    def _stale(self) -> bool:
        return (self.max_age_seconds is not None and self._loaded_at is not None
                and time.monotonic() - self._loaded_at >= self.max_age_seconds and self._may_refresh())

    def _refresh_in_background(self) -> None:
        if self._background is None or self._background.done():
            self._background = asyncio.get_running_loop().create_task(self.refresh())

    async def _fetch(self, url: str) -> dict[str, Ed25519PublicKey]:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                url, headers={"Accept": "application/json"}, allow_redirects=False) as response:
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.content.iter_chunked(16384):
                body += chunk
                if len(body) > _MAX_JWKS_BYTES:
                    raise ValueError("JWK set too large")
        return parse_jwks(json.loads(body))


def parse_jwks(document: Any) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 signature keys of a JWK set by ``kid``; other and malformed members are skipped."""
    members = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(members, list):
        raise ValueError("not a JWK set")
    keys: dict[str, Ed25519PublicKey] = {}
    for jwk in members:
        if not isinstance(jwk, Mapping):
            continue
        kid, x = jwk.get("kid"), jwk.get("x")
        if (jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or jwk.get("alg", "EdDSA") != "EdDSA"
                or jwk.get("use", "sig") != "sig" or not isinstance(kid, str) or not kid or not isinstance(x, str)):
            continue
        try:
            raw = base64.b64decode(x + "=" * (-len(x) % 4), altchars=b"-_", validate=True)
            keys[kid] = Ed25519PublicKey.from_public_bytes(raw)
        except (ValueError, binascii.Error):
            log.warning("JWK %r has no valid Ed25519 public key; skipped", kid)
    return keys
