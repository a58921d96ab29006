"""Canonical bytes of JSON content, so a digest or a signature means the same thing everywhere.

RFC 8785 (JSON Canonicalization Scheme): object members sorted by their UTF-16 code units, no
whitespace, numbers in their shortest ECMAScript form, strings minimally escaped. Two services that
hash "the same report version" therefore hash the same bytes, whatever dict order or float spelling
each one had in memory.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785


def canonical_json(content: Any) -> bytes:
    """The RFC 8785 bytes of ``content`` (dicts, lists, str, int, float, bool, None only).

    Raises ``ValueError`` for what JSON cannot hold exactly: NaN, infinities, integers beyond 2**53
    in magnitude, non-string keys.
    """
    try:
        return rfc8785.dumps(content)
    except (rfc8785.CanonicalizationError, TypeError) as error:
        raise ValueError(f"not canonicalisable JSON: {error}") from error


def content_sha256(content: Any) -> str:
    """The hex SHA-256 of the canonical bytes."""
    return hashlib.sha256(canonical_json(content)).hexdigest()
