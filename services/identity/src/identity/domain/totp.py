"""Second factor: TOTP (RFC 6238) with replay refusal, single-use backup codes, and TOTP secrets sealed at rest."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import secrets
import unicodedata
from datetime import datetime

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOTP_INTERVAL_SECONDS = 30


def new_secret() -> str:
    """160 random bits (RFC 4226 §4's recommended length) as 32 base32 characters."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, email: str, issuer: str = "Telerad") -> str:
    return pyotp.TOTP(secret, interval=TOTP_INTERVAL_SECONDS).provisioning_uri(name=email, issuer_name=issuer)


def qr_png(uri: str) -> bytes:
    out = io.BytesIO()
    segno.make(uri, error="m", micro=False).save(out, kind="png", scale=5, border=4)
    return out.getvalue()


def accepted_step(secret: str, code: str, now: datetime, last_used_step: int | None, window: int = 1, *,
                  digits: int = 6) -> int | None:
    """The RFC 6238 time step the code belongs to, or None when it is wrong, malformed, outside ±window steps
    of now, or belongs to a step at or before last_used_step (each code, and every code older than the last
    one accepted, works once: ASVS V6.5.1). The caller stores the returned step as the next last_used_step."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if window < 0:
        raise ValueError("window must not be negative")
    if len(code) > 32:
        return None
    # NFKC turns full-width digits from East Asian keyboards into ASCII ones; anything else non-ASCII is refused.
    code = unicodedata.normalize("NFKC", code).replace(" ", "")
    if len(code) != digits or not (code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret, digits=digits, interval=TOTP_INTERVAL_SECONDS)
    current = totp.timecode(now)
    matched: int | None = None
    # Every candidate is computed and compared, so timing does not reveal which step matched.
    for step in range(current - window, current + window + 1):
        if step < 0:
            continue
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()) and \
                (last_used_step is None or step > last_used_step):
            matched = step
    return matched


# Backup codes: 10 characters from a 31-symbol alphabet without 0/o, 1/l/i, i.e. 10·log2(31) ≈ 49.5 bits.
BACKUP_CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
BACKUP_CODE_LENGTH = 10
# Salted PBKDF2-HMAC-SHA256 rather than argon2: ~6 ms a hash keeps checking a code against all ten of a user's
# unused codes well under a password hash's cost, while making an offline search of one stolen code's
# ~2^49.5 space take GPU-years instead of GPU-days (plain SHA-256). A code is also useless without the password.
BACKUP_CODE_ITERATIONS = 20_000


def new_backup_codes(n: int = 10) -> list[str]:
    codes = ("".join(secrets.choice(BACKUP_CODE_ALPHABET) for _ in range(BACKUP_CODE_LENGTH)) for _ in range(n))
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def normalised_backup_code(code: str) -> str:
    return "".join(c for c in code.lower() if not c.isspace() and c != "-")


def hash_backup_code(code: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _pbkdf2(normalised_backup_code(code), salt, BACKUP_CODE_ITERATIONS)
    return f"pbkdf2-sha256${BACKUP_CODE_ITERATIONS}${_b64(salt)}${_b64(digest)}"


def backup_code_matches(code: str, hashed: str) -> bool:
    """Whether code is the one hashed; single use is the caller's part (mark the row used in the same commit)."""
    code = normalised_backup_code(code)
    if len(code) != BACKUP_CODE_LENGTH or any(c not in BACKUP_CODE_ALPHABET for c in code):
        return False
    try:
        scheme, iterations, salt, digest = hashed.split("$")
        if scheme != "pbkdf2-sha256" or not 1 <= int(iterations) <= 10_000_000:
            return False
        expected = _unb64(digest)
        return hmac.compare_digest(_pbkdf2(code, _unb64(salt), int(iterations)), expected)
    except ValueError:
        return False


def _pbkdf2(code: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", code.encode(), salt, iterations)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _unb64(text: str) -> bytes:
    # urlsafe_b64decode silently skips foreign characters; refuse them instead.
    if not _BASE64URL.issuperset(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as error:
        raise ValueError("not base64url") from error


class SecretBox:
    """AES-256-GCM with a random 96-bit nonce per seal. A token is base64url(version ‖ nonce ‖ ciphertext ‖ tag).
    bound_to (e.g. the user id) is authenticated but not stored, so a sealed value copied to another row fails to
    open there. At ~2^32 seals per key, rotate the key (NIST SP 800-38D §8.3 random-nonce limit)."""

    _VERSION = b"\x01"
    _NONCE_BYTES = 12

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("SecretBox needs a 32-byte key (SecretBox.generate_key())")
        self._aead = AESGCM(key)

    @staticmethod
    def generate_key() -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def seal(self, plaintext: str, *, bound_to: str = "") -> str:
        nonce = secrets.token_bytes(self._NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), self._VERSION + bound_to.encode())
        return _b64(self._VERSION + nonce + sealed)

    def open(self, token: str, *, bound_to: str = "") -> str:
        """The plaintext; ValueError if the token was altered, truncated, sealed under another key or binding."""
        raw = _unb64(token)
        if len(raw) < 1 + self._NONCE_BYTES + 16 or raw[:1] != self._VERSION:
            raise ValueError("not a sealed secret")
        try:
            plaintext = self._aead.decrypt(raw[1:1 + self._NONCE_BYTES], raw[1 + self._NONCE_BYTES:],
                                           self._VERSION + bound_to.encode())
        except InvalidTag as error:
            raise ValueError("sealed secret was altered or sealed under another key") from error
        return plaintext.decode()

    def __repr__(self) -> str:
        return "SecretBox(key=<hidden>)"
