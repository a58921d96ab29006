"""Session rules: automatic logoff (HIPAA 164.312(a)(2)(iii)), a hard lifetime, a cap on concurrent sessions,
opaque refresh tokens stored only as digests, and PKCE (RFC 7636) for the authorization-code exchange."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

S = TypeVar("S")


@dataclass(frozen=True)
class SessionPolicy:
    idle_timeout: timedelta = timedelta(minutes=30)
    absolute_lifetime: timedelta = timedelta(hours=12)
    max_concurrent: int = 5

    def __post_init__(self) -> None:
        if self.idle_timeout <= timedelta(0) or self.absolute_lifetime <= timedelta(0):
            raise ValueError("idle_timeout and absolute_lifetime must be positive")
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")

    def is_idle_expired(self, last_seen_at: datetime, now: datetime) -> bool:
        return now - last_seen_at >= self.idle_timeout

    def is_absolutely_expired(self, started_at: datetime, now: datetime) -> bool:
        return now - started_at >= self.absolute_lifetime

    def is_expired(self, started_at: datetime, last_seen_at: datetime, now: datetime) -> bool:
        return self.is_idle_expired(last_seen_at, now) or self.is_absolutely_expired(started_at, now)


def sessions_to_end(active_sessions_sorted_oldest_first: Sequence[S], policy: SessionPolicy) -> list[S]:
    """The oldest sessions beyond policy.max_concurrent. Pass the user's active sessions with the one being
    started last, so the newcomer always survives and the oldest make room for it."""
    excess = len(active_sessions_sorted_oldest_first) - policy.max_concurrent
    return list(active_sessions_sorted_oldest_first[:excess]) if excess > 0 else []


def new_opaque_token() -> str:
    """32 random bytes, base64url (43 characters): the refresh token handed to the client, never stored."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """SHA-256 hex of the token, the form stored and looked up; a fast hash suffices for 256 random bits."""
    return hashlib.sha256(token.encode()).hexdigest()


_PKCE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def pkce_s256_challenge(verifier: str) -> str:
    """BASE64URL(SHA256(ASCII(code_verifier))) without padding, RFC 7636 §4.2."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def pkce_s256_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6 with method S256; False for a verifier that is not 43 to 128 unreserved characters (§4.1)."""
    if not _PKCE_VERIFIER.fullmatch(verifier):
        return False
    return hmac.compare_digest(pkce_s256_challenge(verifier).encode(), challenge.encode())
