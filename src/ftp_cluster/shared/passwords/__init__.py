"""Password hashes: the formats a ``password_hash`` may be in, behind two calls.

:func:`is_valid_hash` says whether a hash is one this server can check (a
supported format with costs a worker can afford: checked when a user is
loaded, not at every login); :func:`verify_password` checks a password
against it, in constant time, and is slow by design (run it off the event
loop: :mod:`ftp_cluster.worker.password_check`).

========================  ==================================  ========================
scheme                    looks like                          made by
========================  ==================================  ========================
``argon2id`` (default)    ``$argon2id$v=19$m=..,t=..,p=..$``  argon2-cffi, PHP, Go, ...
``bcrypt``                ``$2a$``, ``$2b$``, ``$2y$``        bcrypt, PHP, htpasswd -B
``sha512-crypt``          ``$6$[rounds=N$]salt$``             /etc/shadow, openssl -6
``sha256-crypt``          ``$5$[rounds=N$]salt$``             openssl passwd -5
``scrypt``                ``scrypt$14$8$1$salt$hash``         older ``hash-password``
========================  ==================================  ========================

Passwords are hashed and compared as bytes: a str from the wire was decoded
as UTF-8 with ``surrogateescape``, so :func:`as_bytes` gives back exactly
the bytes the client sent, even those that are not UTF-8.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final, Literal, get_args

from ftp_cluster.shared.passwords.argon2id import hash_argon2id, is_valid_argon2id, verify_argon2id
from ftp_cluster.shared.passwords.bcrypt_scheme import hash_bcrypt, is_valid_bcrypt, verify_bcrypt
from ftp_cluster.shared.passwords.scrypt import hash_scrypt, is_valid_scrypt, verify_scrypt
from ftp_cluster.shared.passwords.sha_crypt import (
    hash_sha_crypt,
    is_valid_sha_crypt,
    verify_sha_crypt,
)

__all__ = [
    "DEFAULT_SCHEME",
    "SCHEMES",
    "Scheme",
    "as_bytes",
    "hash_password",
    "is_valid_hash",
    "scheme_of",
    "verify_password",
]

Scheme = Literal["argon2id", "bcrypt", "sha512-crypt", "sha256-crypt", "scrypt"]
SCHEMES: Final[tuple[Scheme, ...]] = get_args(Scheme)
DEFAULT_SCHEME: Final[Scheme] = "argon2id"

# The prefix says the format; each format's own parser then says yes or no.
_PREFIXES: Final[tuple[tuple[str, Scheme], ...]] = (
    ("$argon2id$", "argon2id"),
    ("$2a$", "bcrypt"),
    ("$2b$", "bcrypt"),
    ("$2y$", "bcrypt"),
    ("$6$", "sha512-crypt"),
    ("$5$", "sha256-crypt"),
    ("scrypt$", "scrypt"),
)
_VALID: Final[dict[Scheme, Callable[[str], bool]]] = {
    "argon2id": is_valid_argon2id,
    "bcrypt": is_valid_bcrypt,
    "sha512-crypt": is_valid_sha_crypt,
    "sha256-crypt": is_valid_sha_crypt,
    "scrypt": is_valid_scrypt,
}
_VERIFY: Final[dict[Scheme, Callable[[bytes, str], bool]]] = {
    "argon2id": verify_argon2id,
    "bcrypt": verify_bcrypt,
    "sha512-crypt": verify_sha_crypt,
    "sha256-crypt": verify_sha_crypt,
    "scrypt": verify_scrypt,
}
_SALT_ALPHABET = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def as_bytes(password: str) -> bytes:
    """The bytes ``password`` stands for (UTF-8; lone surrogates as the bytes they escape)."""
    return password.encode("utf-8", "surrogateescape")


def scheme_of(encoded: str) -> Scheme | None:
    """The scheme ``encoded`` claims by its prefix (``None``: no supported one)."""
    for prefix, scheme in _PREFIXES:
        if encoded.startswith(prefix):
            return scheme
    return None


def is_valid_hash(encoded: str) -> bool:
    """True if ``encoded`` is a supported format with parameters a worker can afford."""
    scheme = scheme_of(encoded)
    return scheme is not None and _VALID[scheme](encoded)


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against ``encoded``; False for an invalid hash.

    Slow by design (tens of milliseconds): call it off the event loop.
    """
    scheme = scheme_of(encoded)
    return scheme is not None and _VERIFY[scheme](as_bytes(password), encoded)


def hash_password(password: str, scheme: Scheme | None = None, *, log2_n: int | None = None) -> str:
    """A new salted hash of ``password`` in ``scheme`` (default argon2id).

    ``log2_n`` is scrypt's cost and implies ``scheme="scrypt"`` (tests pass a
    low one). Raises :class:`ValueError` for a password bcrypt would cut.
    """
    secret = as_bytes(password)
    if log2_n is not None:
        if scheme not in (None, "scrypt"):
            raise ValueError("log2_n is a cost of scrypt only")
        return hash_scrypt(secret, log2_n=log2_n)
    match scheme or DEFAULT_SCHEME:
        case "argon2id":
            return hash_argon2id(secret)
        case "bcrypt":
            return hash_bcrypt(secret)
        case "sha512-crypt":
            return hash_sha_crypt(secret, _crypt_salt(), sha512=True)
        case "sha256-crypt":
            return hash_sha_crypt(secret, _crypt_salt(), sha512=False)
        case "scrypt":
            return hash_scrypt(secret)
    raise ValueError(f"unknown scheme {scheme!r} (known: {', '.join(SCHEMES)})")


def _crypt_salt() -> str:
    # 16 characters of the 64-letter crypt alphabet (96 bits), as openssl draws.
    return bytes(_SALT_ALPHABET[b & 0x3F] for b in os.urandom(16)).decode("ascii")
