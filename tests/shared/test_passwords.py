"""Every password hash format against hashes made by the reference tools.

SHA-crypt hashes come from ``openssl passwd -6 / -5`` run here, argon2id
from argon2-cffi's own hasher, bcrypt from the bcrypt package (``$2a$`` and
``$2b$``) and from PHP's documentation (``$2y$``, what ``password_hash``
writes), so the formats are checked against what other systems store, not
only against this package's own output.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

import argon2
import bcrypt
import pytest

from ftp_cluster.shared.passwords import (
    SCHEMES,
    hash_password,
    is_valid_hash,
    scheme_of,
    verify_password,
)
from ftp_cluster.shared.passwords.argon2id import hash_argon2id
from ftp_cluster.shared.passwords.scrypt import hash_scrypt
from ftp_cluster.shared.passwords.sha_crypt import MAX_ROUNDS, hash_sha_crypt
from tests.programs import program

PASSWORDS = ["Tr0ub4dor&3", "pässwörd", "x" * 100, "a b:c$d"]


def openssl_passwd(flag: str, password: str, salt: str | None = None) -> str:
    """``password`` hashed by ``openssl passwd`` (``flag``: -5, -6); a random salt by default."""
    program("openssl")
    salted = ["-salt", salt] if salt is not None else []
    done = subprocess.run(
        ["openssl", "passwd", flag, *salted, "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return done.stdout.strip()


@pytest.mark.parametrize("flag", ["-6", "-5"])
@pytest.mark.parametrize("salt", ["abc", "saltsaltsaltsalt", "rounds=12345$Ab./9"])
@pytest.mark.parametrize("password", PASSWORDS)
def test_sha_crypt_checks_openssl_hashes(flag: str, salt: str, password: str) -> None:
    encoded = openssl_passwd(flag, password, salt)
    assert encoded.startswith(f"${flag[1]}$")
    assert is_valid_hash(encoded)
    assert verify_password(password, encoded)
    assert not verify_password(password + "x", encoded)
    assert not verify_password(password[:-1], encoded)
    assert not verify_password("", encoded)


def test_sha_crypt_matches_the_specification_vectors() -> None:
    # From Drepper's "Unix crypt using SHA-256 and SHA-512", the test vectors.
    vectors = [
        (
            "Hello world!",
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu"
            "esI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        ),
        (
            "Hello world!",
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbH"
            "bbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
        ),
        ("Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"),
        (
            "Hello world!",
            "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
        ),
        (
            "we have a short salt string but not a short password",
            "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/",
        ),
    ]
    for password, encoded in vectors:
        assert verify_password(password, encoded), encoded
        parts = encoded.split("$")
        rounds = int(parts[2].removeprefix("rounds=")) if len(parts) == 5 else None
        again = hash_sha_crypt(password.encode(), parts[-2], sha512=parts[1] == "6", rounds=rounds)
        assert again == encoded


@pytest.mark.parametrize("password", PASSWORDS)
def test_argon2id_checks_argon2_cffi_hashes(password: str) -> None:
    # argon2-cffi's default profile (RFC 9106 low memory: 64 MiB, 3 passes, 4 lanes).
    encoded = argon2.PasswordHasher().hash(password)
    assert encoded.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert is_valid_hash(encoded)
    assert verify_password(password, encoded)
    assert not verify_password(password + "x", encoded)


@pytest.mark.parametrize("prefix", [b"2a", b"2b"])
@pytest.mark.parametrize("password", PASSWORDS)
def test_bcrypt_checks_bcrypt_hashes(prefix: bytes, password: str) -> None:
    encoded = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(5, prefix=prefix)).decode()
    assert encoded.startswith(f"${prefix.decode()}$05$")
    assert is_valid_hash(encoded)
    assert verify_password(password, encoded)
    assert not verify_password(password + "x", encoded) or len(password.encode()) >= 72


def test_bcrypt_checks_php_2y_and_2a_hashes() -> None:
    # The examples of PHP's password_verify and crypt documentation.
    for encoded in (
        "$2y$07$BCryptRequires22Chrcte/VlQH0piJtjXl.0t1XkA8pw9dMXTpOq",
        "$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a",
        "$2a$07$usesomesillystringfore2uDLvp1Ii2e./U9C8sBjqp8I90dH6hi",
    ):
        assert is_valid_hash(encoded)
        assert verify_password("rasmuslerdorf", encoded)
        assert not verify_password("rasmuslerdorF", encoded)


def test_bcrypt_reads_72_bytes_as_other_tools_do() -> None:
    long = "p" * 100
    encoded = bcrypt.hashpw(long.encode()[:72], bcrypt.gensalt(4)).decode()
    assert verify_password(long, encoded)  # what other tools did: the first 72 bytes
    assert verify_password("p" * 72, encoded)
    assert not verify_password("p" * 71, encoded)
    with pytest.raises(ValueError, match="72 bytes"):
        hash_password(long, "bcrypt")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_hash_password_writes_every_scheme(scheme: str) -> None:
    encoded = hash_password("s3cret-écrit", scheme)  # type: ignore[arg-type]
    assert scheme_of(encoded) == scheme
    assert is_valid_hash(encoded)
    assert verify_password("s3cret-écrit", encoded)
    assert not verify_password("s3cret-ecrit", encoded)


def test_hash_password_writes_argon2id_by_default() -> None:
    encoded = hash_password("x")
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    # The legacy keyword keeps writing scrypt, as before.
    assert hash_password("x", log2_n=4).startswith("scrypt$4$")


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain text",
        "$1$abc$0123456789012345678901",  # MD5-crypt: not supported
        "$argon2i$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",  # not argon2id
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ",  # the hash missing
        "$argon2id$v=19$m=4194304,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",  # 4 GiB
        "$argon2id$v=19$m=65536,t=1000,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",  # passes
        "$argon2id$v=19$m=65536,t=3,p=64$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",  # lanes
        "$argon2id$v=19$m=65536,t=3,p=4$c2Fs!HNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",  # not base64
        "$2b$12$tooshort",
        "$2b$31$" + "a" * 53,  # days per check
        "$2b$03$" + "a" * 53,  # below bcrypt's minimum
        "$2x$10$" + "a" * 53,  # the buggy variant
        "$6$abc$tooshort",
        "$6$rounds=999$abc$" + "a" * 86,  # below the minimum rounds
        f"$6$rounds={MAX_ROUNDS + 1}$abc$" + "a" * 86,  # above the cap
        "$6$saltsaltsaltsaltX$" + "a" * 86,  # a salt longer than 16
        "$5$abc$" + "a" * 86,  # a SHA-512 length under $5$
        "$6$a:b$" + "a" * 86,  # ':' cannot be in a salt
        "scrypt$14$8$1$c2FsdA==",
        "scrypt$18$8$1$c2FsdA==$ZGlnZXN0",  # more memory than scrypt is given
    ],
)
def test_malformed_or_unaffordable_hashes_are_refused(encoded: str) -> None:
    assert not is_valid_hash(encoded)
    assert verify_password("x", encoded) is False  # and checking does not raise


def test_a_wrong_or_undecodable_password_never_raises() -> None:
    cheap = [
        hash_argon2id(b"right", memory_kib=1024, time_cost=1),
        bcrypt.hashpw(b"right", bcrypt.gensalt(4)).decode(),
        hash_sha_crypt(b"right", "abc"),
        hash_sha_crypt(b"right", "abc", sha512=False),
        hash_scrypt(b"right", log2_n=4),
    ]
    for encoded in cheap:
        for wrong in ("", "wrong", "ab\udcbbcd", "nul\x00byte", "é" * 200):
            assert verify_password(wrong, encoded) is False, encoded
        assert verify_password("right", encoded)


def _woke_and_total(check: Callable[[], object]) -> tuple[float, float]:
    """Run ``check`` in a thread; when this thread, asleep for 20 ms, got the GIL back.

    The switch interval is set to seconds meanwhile, so a check that holds
    the GIL keeps it to its end (``sorted`` of a long list: woke == total),
    while one that releases it lets this thread in after the 20 ms.
    """
    interval = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    try:
        worker = threading.Thread(target=check)
        start = time.perf_counter()
        worker.start()
        time.sleep(0.02)
        woke = time.perf_counter() - start
        worker.join()
        return woke, time.perf_counter() - start
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.parametrize("scheme", ["argon2id", "bcrypt", "scrypt"])
def test_slow_hashes_release_the_gil(scheme: str) -> None:
    make: dict[str, Callable[[], str]] = {
        "argon2id": lambda: hash_argon2id(b"pw", memory_kib=64 * 1024, time_cost=8),
        "bcrypt": lambda: bcrypt.hashpw(b"pw", bcrypt.gensalt(13)).decode(),
        "scrypt": lambda: hash_scrypt(b"pw", log2_n=17),
    }
    encoded = make[scheme]()
    woke, total = _woke_and_total(lambda: verify_password("pw", encoded))
    assert total > 0.1, f"the check took only {total:.3f} s: too fast to tell"
    assert woke < total / 2, f"this thread waited {woke:.3f} s of the check's {total:.3f} s"
