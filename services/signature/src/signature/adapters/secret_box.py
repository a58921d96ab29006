"""Private signing keys sealed at rest: AES-256-GCM (NIST SP 800-38D), as identity seals its own.

A sealed value is base64url(version ‖ 96-bit random nonce ‖ ciphertext ‖ tag). ``bound_to`` (the key
id) is authenticated but not stored, so a sealed private key copied onto another key's row does not open.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_NONCE_BYTES = 12
_TAG_BYTES = 16


class SecretBox:
    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secret key must be 32 bytes (base64 of 32 random bytes)")
        self._aead = AESGCM(key)

    @staticmethod
    def generate_key() -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def seal(self, plaintext: bytes, *, bound_to: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, _VERSION + bound_to.encode())
        return base64.urlsafe_b64encode(_VERSION + nonce + sealed).decode()

    def open(self, token: str, *, bound_to: str) -> bytes:
        """The plaintext; ValueError if the value was altered, sealed under another key or for another row."""
        try:
            raw = base64.urlsafe_b64decode(token.encode())
        except (binascii.Error, ValueError) as error:
            raise ValueError("not a sealed secret") from error
        if len(raw) < 1 + _NONCE_BYTES + _TAG_BYTES or raw[:1] != _VERSION:
            raise ValueError("not a sealed secret")
        try:
            return self._aead.decrypt(raw[1:1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES:], _VERSION + bound_to.encode())
        except InvalidTag as error:
            raise ValueError("the sealed key was altered, or sealed under another secret key") from error

    def __repr__(self) -> str:
        return "SecretBox(key=<hidden>)"
