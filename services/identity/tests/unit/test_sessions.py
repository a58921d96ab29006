import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from identity.domain.sessions import (
    SessionPolicy,
    new_opaque_token,
    pkce_s256_challenge,
    pkce_s256_matches,
    sessions_to_end,
    token_digest,
)

POLICY = SessionPolicy()
T0 = datetime(2026, 3, 14, 8, 0, tzinfo=UTC)

# RFC 7636 Appendix B
RFC_7636_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_7636_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_a_session_idle_for_thirty_minutes_has_expired():
    assert not POLICY.is_idle_expired(T0, T0 + timedelta(minutes=29, seconds=59))
    assert POLICY.is_idle_expired(T0, T0 + timedelta(minutes=30))


def test_a_session_older_than_twelve_hours_has_expired_however_active():
    assert not POLICY.is_absolutely_expired(T0, T0 + timedelta(hours=11, minutes=59))
    assert POLICY.is_absolutely_expired(T0, T0 + timedelta(hours=12))
    assert POLICY.is_expired(T0, T0 + timedelta(hours=11, minutes=59), T0 + timedelta(hours=12))
    assert not POLICY.is_expired(T0, T0 + timedelta(hours=11), T0 + timedelta(hours=11, minutes=10))


def test_policies_carry_an_organisations_own_limits():
    strict = SessionPolicy(idle_timeout=timedelta(minutes=5), absolute_lifetime=timedelta(hours=1), max_concurrent=1)
    assert strict.is_idle_expired(T0, T0 + timedelta(minutes=5))
    assert strict.is_absolutely_expired(T0, T0 + timedelta(hours=1))


@pytest.mark.parametrize("kwargs", [{"idle_timeout": timedelta(0)}, {"absolute_lifetime": timedelta(seconds=-1)},
                                    {"max_concurrent": 0}])
def test_a_nonsensical_policy_is_rejected(kwargs: dict[str, object]):
    with pytest.raises(ValueError):
        SessionPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("count", "ended"), [(0, []), (4, []), (5, []), (6, ["s0"]), (8, ["s0", "s1", "s2"])])
def test_the_oldest_sessions_beyond_the_limit_end_when_a_new_one_starts(count: int, ended: list[str]):
    sessions = [f"s{i}" for i in range(count)]
    assert sessions_to_end(sessions, POLICY) == ended


def test_a_single_session_policy_keeps_only_the_newest():
    assert sessions_to_end(["old", "older", "new"], SessionPolicy(max_concurrent=1)) == ["old", "older"]


def test_opaque_tokens_are_32_random_urlsafe_bytes():
    token = new_opaque_token()
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert new_opaque_token() != token


def test_the_stored_digest_is_sha256_hex():
    assert token_digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    token = new_opaque_token()
    assert token_digest(token) == token_digest(token) and token not in token_digest(token)


def test_the_rfc_7636_appendix_b_vector():
    assert pkce_s256_challenge(RFC_7636_VERIFIER) == RFC_7636_CHALLENGE
    assert pkce_s256_matches(RFC_7636_VERIFIER, RFC_7636_CHALLENGE)


def test_another_verifier_or_the_plain_method_does_not_match():
    assert not pkce_s256_matches(RFC_7636_VERIFIER[:-1] + "Y", RFC_7636_CHALLENGE)
    assert not pkce_s256_matches(RFC_7636_VERIFIER, RFC_7636_VERIFIER)
    assert not pkce_s256_matches(RFC_7636_VERIFIER, RFC_7636_CHALLENGE + "=")
    assert not pkce_s256_matches(RFC_7636_VERIFIER, "é" * 43)


@pytest.mark.parametrize("length", [43, 128])
def test_verifiers_of_43_to_128_unreserved_characters_are_allowed(length: int):
    verifier = ("aZ0-._~" * 20)[:length]
    assert pkce_s256_matches(verifier, pkce_s256_challenge(verifier))


@pytest.mark.parametrize("verifier", ["a" * 42, "a" * 129, "a" * 42 + "+", "a" * 42 + "/", "a" * 42 + "=",
                                      "a" * 42 + " ", "a" * 42 + "é", "a" * 43 + "\n"])
def test_verifiers_outside_the_rfc_7636_alphabet_or_length_are_refused(verifier: str):
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert not pkce_s256_matches(verifier, challenge.decode())
