"""Password hashes for the config file: scrypt from the standard library.

Format: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``, as printed by
``ftp-cluster hash-password``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

__all__ = ["hash_password", "verify_password"]

_LOG2_N = 14
_R = 8
_P = 1


def hash_password(password: str, *, log2_n: int = _LOG2_N) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=1 << log2_n, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${log2_n}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def is_valid_hash(encoded: str) -> bool:
    parts = encoded.split("$")
    return len(parts) == 6 and parts[0] == "scrypt" and all(parts[1:4]) and parts[1].isdigit()


def verify_password(password: str, encoded: str) -> bool:
    if not is_valid_hash(encoded):
        return False
    _, log2_n, r, p, salt, digest = encoded.split("$")
    expected = base64.b64decode(digest)
    actual = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=1 << int(log2_n),
        r=int(r),
        p=int(p),
        dklen=len(expected),
        maxmem=256 * 1024 * 1024,
    )
    return hmac.compare_digest(actual, expected)
