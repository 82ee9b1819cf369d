"""Argon2id hashes (``$argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>``) through argon2-cffi.

The default for new hashes. The C code releases the GIL while it hashes, so
verifications in a thread pool leave the event loop running.
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError
from argon2.low_level import verify_secret

__all__ = ["hash_argon2id", "is_valid_argon2id", "verify_argon2id"]

# OWASP's first recommendation for argon2id (19 MiB, 2 passes, 1 lane): a
# few tens of milliseconds on one core, so a worker can check logins by the
# hundred per second. One lane matters: argon2 runs a thread per lane.
_MEMORY_KIB = 19 * 1024
_TIME_COST = 2
_PARALLELISM = 1

# What a stored hash may ask for: each check in the pool holds that much
# memory (the scrypt cap), and runs up to that many threads.
_MAX_MEMORY_KIB = 256 * 1024
_MAX_TIME_COST = 64
_MAX_PARALLELISM = 16

_B64 = "[A-Za-z0-9+/]"
_PATTERN = re.compile(
    rf"\$argon2id\$(?:v=(?P<v>16|19)\$)?m=(?P<m>[1-9][0-9]{{0,9}}),t=(?P<t>[1-9][0-9]{{0,9}}),"
    rf"p=(?P<p>[1-9][0-9]{{0,9}})\${_B64}{{11,}}\${_B64}{{6,}}"
)


def hash_argon2id(
    password: bytes,
    *,
    memory_kib: int = _MEMORY_KIB,
    time_cost: int = _TIME_COST,
    parallelism: int = _PARALLELISM,
) -> str:
    """A new salted argon2id hash of ``password`` (tests pass lower costs)."""
    hasher = PasswordHasher(
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        hash_len=32,
        salt_len=16,
        type=Type.ID,
    )
    return hasher.hash(password)


def is_valid_argon2id(encoded: str) -> bool:
    """True for a well-formed argon2id hash whose costs a worker can afford."""
    match = _PATTERN.fullmatch(encoded)
    if match is None:
        return False
    memory, time_cost, parallelism = int(match["m"]), int(match["t"]), int(match["p"])
    return (
        8 * parallelism <= memory <= _MAX_MEMORY_KIB
        and time_cost <= _MAX_TIME_COST
        and parallelism <= _MAX_PARALLELISM
    )


def verify_argon2id(password: bytes, encoded: str) -> bool:
    """Check ``password`` against an argon2id hash (the C library compares in constant time)."""
    if not is_valid_argon2id(encoded):
        return False
    try:
        return verify_secret(encoded.encode("ascii"), password, Type.ID)
    except VerificationError:  # a mismatch, or a hash the library cannot decode
        return False
