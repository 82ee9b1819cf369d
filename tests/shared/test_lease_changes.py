"""How a batch of lease changes shrinks before it is sent to Redis.

Pure functions; what the shrunk batches do in a real Redis is tested in
test_limits_redis.py and test_limits_spares.py.
"""

from __future__ import annotations

from ftp_cluster.shared.limits.redis.lease_changes import Admit, Login, Release, Swap, coalesce

IP = "127.0.0.1"


def test_a_session_admitted_and_released_in_one_batch_cancels_out() -> None:
    changes: list[Admit | Login | Release] = [
        Admit("a", IP, -1, -1),
        Admit("b", IP, -1, -1),
        Login("a", "alice", -1, None),
        Release("x", IP, None),  # admitted in an earlier batch: sent
        Release("a", None, "alice"),  # a logout keeps the session
        Login("b", "bob", -1, None),
        Release("a", IP, None),
        Admit("~1", IP, 5, 5),  # a spare's answer is read: sent
        Release("~1", IP, None),
    ]
    operations, slots = coalesce([*changes])
    assert operations == [changes[1], changes[3], changes[5], changes[7], changes[8]]
    assert slots == [None, 0, None, 1, None, 2, None, 3, 4]


def test_a_slot_passed_on_through_spares_and_short_sessions_is_one_swap() -> None:
    changes: list[Swap | Release | Login] = [
        Swap("a", "~1", IP),  # a leaves its slot as spare ~1
        Release("x", None, "alice"),
        Swap("~1", "b", IP),  # b takes it,
        Login("b", "alice", -1, None),  # logs in,
        Swap("~2", "c", IP),  # (c takes a spare from an earlier batch)
        Swap("b", "~3", IP),  # and leaves it as spare ~3
        Release("b", None, "alice"),
        Swap("c", "~4", IP),  # c arrived in this batch but did not log in
    ]
    operations, slots = coalesce([*changes])
    assert operations == [Swap("a", "~3", IP), Release("x", None, "alice"), Swap("~2", "~4", IP)]
    assert slots == [0, 1, 0, None, 2, 0, None, 2]
