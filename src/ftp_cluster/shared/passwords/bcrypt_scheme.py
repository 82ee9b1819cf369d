"""bcrypt hashes (``$2a$``, ``$2b$``, ``$2y$``) through the ``bcrypt`` package.

``$2y$`` (PHP's name) and ``$2b$`` are the same algorithm; ``$2a$`` differs
from them only for passwords longer than 255 bytes, and bcrypt reads no more
than 72. The Rust code releases the GIL while it hashes.
"""

from __future__ import annotations

import re

import bcrypt

__all__ = ["MAX_PASSWORD_BYTES", "hash_bcrypt", "is_valid_bcrypt", "verify_bcrypt"]

MAX_PASSWORD_BYTES = 72  # what bcrypt reads of a password
_ROUNDS = 10  # PHP's default: about 50 ms per check
_MIN_COST = 4
# Every step doubles the time: cost 16 is seconds per check.
_MAX_COST = 16
_PATTERN = re.compile(r"\$2[aby]\$(?P<cost>[0-9]{2})\$[./A-Za-z0-9]{53}")


def hash_bcrypt(password: bytes, *, rounds: int = _ROUNDS) -> str:
    """A new ``$2b$`` hash; ``password`` may not be longer than bcrypt reads."""
    if len(password) > MAX_PASSWORD_BYTES:
        raise ValueError(f"bcrypt reads only the first {MAX_PASSWORD_BYTES} bytes of a password")
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds)).decode("ascii")


def is_valid_bcrypt(encoded: str) -> bool:
    """True for a well-formed bcrypt hash of a cost a worker can afford."""
    match = _PATTERN.fullmatch(encoded)
    return match is not None and _MIN_COST <= int(match["cost"]) <= _MAX_COST


def verify_bcrypt(password: bytes, encoded: str) -> bool:
    """Constant-time check of ``password`` against a bcrypt hash."""
    if not is_valid_bcrypt(encoded):
        return False
    # Other implementations read the first 72 bytes and ignore the rest;
    # bcrypt 5 refuses longer passwords instead, so cut them as they did.
    try:
        return bcrypt.checkpw(password[:MAX_PASSWORD_BYTES], encoded.encode("ascii"))
    except ValueError:  # a NUL byte in the password, or a salt it cannot read
        return False
