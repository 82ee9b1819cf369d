"""What only the in-process backend does: shares of a cluster's limits, chunking."""

from __future__ import annotations

import asyncio

import pytest

from ftp_cluster.shared.limits.base import Bucket, ConnectionCaps, Refusal
from ftp_cluster.shared.limits.local import Holding, LocalLimits

IP = "127.0.0.1"


def test_share_divides_caps_rounding_up() -> None:
    async def main() -> None:
        limits = LocalLimits(share=3)
        caps = ConnectionCaps(server=7, per_ip=4)  # parts: 3 and 2
        assert await limits.leases.admit("a", IP, caps) is None
        assert await limits.leases.admit("b", IP, caps) is None
        assert await limits.leases.admit("c", IP, caps) is Refusal.IP_FULL
        assert await limits.leases.admit("c", "127.0.0.2", caps) is None
        assert await limits.leases.admit("d", "127.0.0.3", caps) is Refusal.SERVER_FULL
        assert await limits.leases.login("a", "alice", 2) is None  # part: 1
        assert await limits.leases.login("b", "alice", 2) is Refusal.USER_FULL

    asyncio.run(main())


def test_share_divides_rates_rounding_up() -> None:
    now = [100.0]
    limits = LocalLimits(share=3, clock=lambda: now[0])

    async def main() -> None:
        # ceil(3000 / 3) = 1000 bytes/s.
        assert await limits.bandwidth.reserve([Bucket("server:read", 2999)], 1000) == pytest.approx(
            1.0
        )

    asyncio.run(main())


def test_share_must_be_positive() -> None:
    with pytest.raises(ValueError, match="share"):
        LocalLimits(share=0)


def test_holdings_include_sessions_that_only_logged_in() -> None:
    """A fallback sees logins of sessions it never admitted (Redis admitted them)."""

    async def main() -> None:
        limits = LocalLimits()
        assert await limits.leases.admit("a", IP, ConnectionCaps()) is None
        assert await limits.leases.login("b", "bob", 1) is None
        assert limits.leases.holdings() == [Holding("a", IP, None), Holding("b", None, "bob")]
        assert limits.leases.holding("b") == Holding("b", None, "bob")
        assert limits.stats().sessions == 2
        await limits.leases.release("b")
        assert limits.leases.holding("b") is None
        assert await limits.leases.login("c", "bob", 1) is None

    asyncio.run(main())


@pytest.mark.parametrize(
    ("rate", "chunk"),
    [(1, 16 * 1024), (4 * 1024 * 1024, 41943), (100 * 1024 * 1024, 256 * 1024)],
)
def test_chunk_size_is_ten_milliseconds_clamped(rate: int, chunk: int) -> None:
    assert LocalLimits().bandwidth.chunk_size(rate) == chunk
