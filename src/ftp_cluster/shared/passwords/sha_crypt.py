"""SHA-512-crypt and SHA-256-crypt (``$6$``, ``$5$``): Ulrich Drepper's published algorithm.

What ``/etc/shadow``, ``openssl passwd -6/-5`` and many hosting panels store:
``$6$[rounds=N$]<salt>$<hash>``. No maintained library fits: passlib is
unmaintained and the standard library's ``crypt`` module is gone in 3.13, so
the specification ("Unix crypt using SHA-256 and SHA-512", version 0.6) is
implemented here and checked against ``openssl passwd`` in the tests.

The rounds run in Python and hold the GIL between the small hashlib calls
(about 10 ms for the default 5000 rounds): argon2id and bcrypt, which
release it, are the better choice for new hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_ROUNDS", "hash_sha_crypt", "is_valid_sha_crypt", "verify_sha_crypt"]

_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DEFAULT_ROUNDS = 5000
_MIN_ROUNDS = 1000
# The specification allows 999,999,999 rounds: minutes of CPU per login.
# passlib's default (656,000) still fits below this cap.
MAX_ROUNDS = 1_000_000
_SALT_MAX = 16

_PATTERN = re.compile(
    r"\$(?P<id>[56])\$(?:rounds=(?P<rounds>[1-9][0-9]{0,9})\$)?"
    r"(?P<salt>[^$:\n]{0,16})\$(?P<hash>[./0-9A-Za-z]+)"
)


@dataclass(frozen=True)
class _Variant:
    digest: Callable[[bytes], hashlib._Hash]
    # Which digest bytes go, three at a time, into each four characters.
    groups: tuple[tuple[int, ...], ...]
    encoded_length: int


_SHA512_FIRSTS = (0, 22, 44, 3, 25, 47, 6, 28, 50, 9, 31, 53, 12, 34, 56, 15, 37, 59, 18, 40, 62)
_SHA512 = _Variant(
    hashlib.sha512,
    (*((i, (i + 21) % 63, (i + 42) % 63) for i in _SHA512_FIRSTS), (63,)),
    86,
)
_SHA256_FIRSTS = (0, 21, 12, 3, 24, 15, 6, 27, 18, 9)
_SHA256 = _Variant(
    hashlib.sha256,
    (*((i, (i + 10) % 30, (i + 20) % 30) for i in _SHA256_FIRSTS), (31, 30)),
    43,
)
_VARIANTS = {"5": _SHA256, "6": _SHA512}


def hash_sha_crypt(
    password: bytes, salt: str, *, sha512: bool = True, rounds: int | None = None
) -> str:
    """The ``$6$`` (or ``$5$``) hash of ``password`` with ``salt`` (at most 16 characters)."""
    if not (len(salt) <= _SALT_MAX and _PATTERN.fullmatch(f"$6${salt}$x")):
        raise ValueError("a salt is at most 16 characters, without '$', ':' or a newline")
    if rounds is not None and not _MIN_ROUNDS <= rounds <= MAX_ROUNDS:
        raise ValueError(f"rounds must be between {_MIN_ROUNDS} and {MAX_ROUNDS}")
    ident = "6" if sha512 else "5"
    digest = _crypt(_VARIANTS[ident], password, salt.encode(), rounds or _DEFAULT_ROUNDS)
    spec = f"rounds={rounds}$" if rounds is not None else ""
    return f"${ident}${spec}{salt}${digest}"


def is_valid_sha_crypt(encoded: str) -> bool:
    """True for a well-formed ``$5$``/``$6$`` hash whose rounds are within the cap."""
    return _parse(encoded) is not None


def verify_sha_crypt(password: bytes, encoded: str) -> bool:
    """Constant-time check of ``password`` against a ``$5$``/``$6$`` hash."""
    parsed = _parse(encoded)
    if parsed is None:
        return False
    variant, rounds, salt, expected = parsed
    actual = _crypt(variant, password, salt.encode(), rounds)
    return hmac.compare_digest(actual.encode(), expected.encode())


def _parse(encoded: str) -> tuple[_Variant, int, str, str] | None:
    match = _PATTERN.fullmatch(encoded)
    if match is None:
        return None
    variant = _VARIANTS[match["id"]]
    rounds = int(match["rounds"]) if match["rounds"] else _DEFAULT_ROUNDS
    # Tools write the rounds they used, clamped to the specification's
    # range; a value outside it (or above the cap) was not made by them.
    if not _MIN_ROUNDS <= rounds <= MAX_ROUNDS or len(match["hash"]) != variant.encoded_length:
        return None
    return variant, rounds, match["salt"], match["hash"]


def _repeat(block: bytes, length: int) -> bytes:
    return (block * (length // len(block) + 1))[:length]


def _crypt(variant: _Variant, key: bytes, salt: bytes, rounds: int) -> str:
    h = variant.digest
    alternate = h(key + salt + key).digest()
    length = len(key)
    data = key + salt + _repeat(alternate, length)
    bit = length
    while bit:
        data += alternate if bit & 1 else key
        bit >>= 1
    result = h(data).digest()
    p_bytes = _repeat(h(key * length).digest(), length)
    s_bytes = _repeat(h(salt * (16 + result[0])).digest(), len(salt))
    # The round's inputs depend on i modulo 2, 3 and 7, so 42 rounds repeat:
    # each is one hash of the previous result and a fixed part, before or after.
    pattern: list[tuple[bool, bytes]] = []
    for i in range(42):
        middle = (s_bytes if i % 3 else b"") + (p_bytes if i % 7 else b"")
        pattern.append((True, p_bytes + middle) if i & 1 else (False, middle + p_bytes))
    full, rest = divmod(rounds, 42)
    for _ in range(full):
        for result_last, fixed in pattern:
            result = h(fixed + result).digest() if result_last else h(result + fixed).digest()
    for result_last, fixed in pattern[:rest]:
        result = h(fixed + result).digest() if result_last else h(result + fixed).digest()
    return _encode(variant, result)


def _encode(variant: _Variant, digest: bytes) -> str:
    out = []
    for group in variant.groups:
        value = 0
        for index in group:
            value = (value << 8) | digest[index]
        for _ in range(len(group) + 1):
            out.append(_ALPHABET[value & 0x3F])
            value >>= 6
    return "".join(out)
