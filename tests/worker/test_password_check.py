"""PasswordChecks: real hashes in its real thread pool; the cache's clock is the test's."""

from __future__ import annotations

import asyncio

import pytest

from ftp_cluster.shared.passwords.argon2id import hash_argon2id
from ftp_cluster.shared.passwords.scrypt import hash_scrypt
from ftp_cluster.worker.password_check import ChecksBusy, PasswordChecks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cheap(password: str) -> str:
    return hash_argon2id(password.encode(), memory_kib=1024, time_cost=1)


def test_a_right_password_is_cached_until_cache_seconds_pass() -> None:
    async def main() -> None:
        clock = Clock()
        checks = PasswordChecks(cache_seconds=5, threads=1, clock=clock)
        encoded = cheap("right-horse")
        assert await checks.verify("alice", encoded, "right-horse")
        assert await checks.verify("alice", encoded, "right-horse")
        assert checks.stats().verified == 1 and checks.stats().cached == 1
        clock.now += 5.0
        assert await checks.verify("alice", encoded, "right-horse")
        assert checks.stats().verified == 2
        checks.close()

    asyncio.run(main())


def test_a_wrong_password_is_never_cached_and_never_matches_a_cached_one() -> None:
    async def main() -> None:
        checks = PasswordChecks(cache_seconds=60, threads=1)
        encoded = cheap("right-horse")
        assert await checks.verify("alice", encoded, "right-horse")
        for _ in range(3):
            assert not await checks.verify("alice", encoded, "wrong-horse")
        assert not await checks.verify("alice", encoded, "right-horse ")
        assert checks.stats().verified == 5 and checks.stats().cached == 0
        checks.close()

    asyncio.run(main())


def test_a_changed_hash_or_another_login_is_checked_again() -> None:
    async def main() -> None:
        checks = PasswordChecks(cache_seconds=60, threads=1)
        old = cheap("first-pass")
        assert await checks.verify("alice", old, "first-pass")
        new = cheap("second-pass")  # the password changed: the old one no longer logs in
        assert not await checks.verify("alice", new, "first-pass")
        assert await checks.verify("alice", new, "second-pass")
        assert await checks.verify("bob", old, "first-pass")
        assert checks.stats().verified == 4 and checks.stats().cached == 0
        checks.close()

    asyncio.run(main())


def test_no_cache_with_cache_seconds_zero() -> None:
    async def main() -> None:
        checks = PasswordChecks(cache_seconds=0, threads=1)
        encoded = cheap("right-horse")
        for _ in range(3):
            assert await checks.verify("alice", encoded, "right-horse")
        assert checks.stats().verified == 3 and checks.stats().cached == 0
        checks.close()

    asyncio.run(main())


def test_the_cache_holds_no_password() -> None:
    async def main() -> None:
        checks = PasswordChecks(cache_seconds=60, threads=1)
        encoded = cheap("distinctive-Secret-42")
        assert await checks.verify("alice", encoded, "distinctive-Secret-42")
        held = b"".join(checks._cache)
        assert b"distinctive-Secret-42" not in held and encoded.encode() not in held
        checks.close()

    asyncio.run(main())


def test_a_full_queue_refuses_and_the_loop_keeps_running() -> None:
    async def main() -> None:
        checks = PasswordChecks(cache_seconds=0, threads=1, max_waiting=2)
        slow = hash_scrypt(b"pw", log2_n=16)  # a few hundred ms each
        running = [asyncio.ensure_future(checks.verify("a", slow, "pw")) for _ in range(3)]
        await asyncio.sleep(0)  # all three submitted: one running, two waiting
        assert checks.stats().in_flight == 3
        with pytest.raises(ChecksBusy):
            await checks.verify("a", slow, "pw")
        assert checks.stats().busy == 1
        ticks = 0
        while not all(task.done() for task in running):
            await asyncio.sleep(0.01)
            ticks += 1
        assert all(task.result() for task in running)
        assert ticks > 10  # the loop ran while the pool worked
        assert checks.stats().in_flight == 0
        assert await checks.verify("a", slow, "pw")  # room again
        checks.close()

    asyncio.run(main())


def test_a_cancelled_waiting_check_frees_its_place() -> None:
    async def main() -> None:
        checks = PasswordChecks(cache_seconds=0, threads=1, max_waiting=1)
        slow = hash_scrypt(b"pw", log2_n=16)
        first = asyncio.ensure_future(checks.verify("a", slow, "pw"))
        second = asyncio.ensure_future(checks.verify("a", slow, "pw"))
        await asyncio.sleep(0)
        second.cancel()  # the client went away while its check waited
        await asyncio.sleep(0.01)
        assert checks.stats().in_flight == 1
        assert await first
        checks.close()

    asyncio.run(main())
