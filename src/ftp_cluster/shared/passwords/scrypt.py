"""scrypt hashes from the standard library, the format ``hash-password`` wrote first.

Format: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

__all__ = ["hash_scrypt", "is_valid_scrypt", "verify_scrypt"]

_LOG2_N = 14
_R = 8
_P = 1
_MAXMEM = 256 * 1024 * 1024


def hash_scrypt(password: bytes, *, log2_n: int = _LOG2_N) -> str:
    """A new salted scrypt hash of ``password``."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password, salt=salt, n=1 << log2_n, r=_R, p=_P, dklen=32, maxmem=_MAXMEM
    )
    b64 = base64.b64encode
    return f"scrypt${log2_n}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def is_valid_scrypt(encoded: str) -> bool:
    """True if ``encoded`` is in this format, with cost parameters scrypt
    accepts within the memory it is given."""
    return _parse(encoded) is not None


def verify_scrypt(password: bytes, encoded: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_scrypt` hash."""
    parsed = _parse(encoded)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    actual = hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=_MAXMEM)
    return hmac.compare_digest(actual, expected)


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(s.isdigit() for s in parts[1:4]):
        return None
    log2_n, r, p = (int(s) for s in parts[1:4])
    try:
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return None
    # What OpenSSL's scrypt accepts: n below 2 ** (16 r), and about
    # 128 * r * n bytes of memory within maxmem; beyond, it raises.
    if not (1 <= log2_n < 16 * r and p >= 1 and digest) or 129 * r << log2_n > _MAXMEM:
        return None
    return 1 << log2_n, r, p, salt, digest
