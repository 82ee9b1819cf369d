"""Token-bucket arithmetic, with an explicit clock."""

from __future__ import annotations

import pytest

from ftp_cluster.shared.limits.base import BURST_SECONDS
from ftp_cluster.shared.limits.bucket import EFFECTIVE_BURST_SECONDS, TokenBucket, burst_for

RATE = 1000


def test_burst_is_at_most_one_second_of_rate() -> None:
    assert min(BURST_SECONDS, 1.0) == EFFECTIVE_BURST_SECONDS
    assert 0 < burst_for(RATE) <= RATE
    assert TokenBucket(RATE).burst == burst_for(RATE)


def test_new_bucket_starts_empty() -> None:
    bucket = TokenBucket(RATE)
    assert bucket.reserve(500, now=100.0) == pytest.approx(0.5)
    assert bucket.level == pytest.approx(-500)


def test_clock_starts_at_first_use() -> None:
    bucket = TokenBucket(RATE)
    # A bucket made long before its first use has earned nothing meanwhile.
    assert bucket.reserve(1000, now=1e6) == pytest.approx(1.0)


def test_debt_accumulates_and_is_paid_off_at_rate() -> None:
    bucket = TokenBucket(RATE, now=0.0)
    assert bucket.reserve(1000, now=0.0) == pytest.approx(1.0)
    assert bucket.reserve(1000, now=0.0) == pytest.approx(2.0)
    # Half a second later 500 bytes of debt are paid.
    assert bucket.reserve(0, now=0.5) == pytest.approx(1.5)
    assert bucket.reserve(100, now=2.0) == pytest.approx(0.1)


def test_reservations_at_the_rate_never_wait() -> None:
    bucket = TokenBucket(RATE, now=0.0)
    bucket.reserve(0, now=1.0)  # fill up
    for step in range(1, 100):
        assert bucket.reserve(10, now=1.0 + step * 0.01) == 0.0


def test_aggregate_from_first_byte_is_exact() -> None:
    """Moving N bytes in chunks, sleeping as told, takes N / rate seconds."""
    bucket = TokenBucket(RATE, now=0.0)
    now = 0.0
    for _ in range(50):
        now += bucket.reserve(100, now)
    assert now == pytest.approx(50 * 100 / RATE)


def test_idle_credit_is_capped_at_burst() -> None:
    bucket = TokenBucket(RATE, now=0.0)
    assert bucket.refill(3600.0) == pytest.approx(burst_for(RATE))
    burst = burst_for(RATE)
    assert bucket.reserve(int(burst), now=3600.0) == 0.0
    assert bucket.reserve(RATE, now=3600.0) == pytest.approx(1.0)


def test_clock_going_back_neither_drains_nor_fills() -> None:
    bucket = TokenBucket(RATE, now=10.0)
    bucket.reserve(500, now=10.0)
    assert bucket.reserve(0, now=5.0) == pytest.approx(0.5)
    assert bucket.updated == 10.0
    assert bucket.reserve(0, now=10.25) == pytest.approx(0.25)


def test_rate_change_keeps_debt_and_caps_credit() -> None:
    bucket = TokenBucket(RATE, now=0.0)
    bucket.reserve(1000, now=0.0)
    bucket.set_rate(2 * RATE, now=0.0)
    assert bucket.rate == 2 * RATE
    assert bucket.wait() == pytest.approx(0.5)

    bucket.refill(100.0)
    assert bucket.level == pytest.approx(burst_for(2 * RATE))
    bucket.set_rate(RATE, now=100.0)
    assert bucket.level == pytest.approx(burst_for(RATE))


@pytest.mark.parametrize("rate", [0, -1])
def test_rate_must_be_positive(rate: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(rate)
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(RATE).set_rate(rate, now=0.0)
