"""Token-bucket arithmetic with reservation semantics, for in-process use.

A bucket's *level* is the credit in bytes. It refills at ``rate`` bytes per
second up to :func:`burst_for` ``(rate)`` and is lowered by every
reservation, possibly below zero: the debt is what the caller must wait for,
``-level / rate`` seconds. Nobody is ever refused; everyone is told when.

The Redis backend runs the same arithmetic in ``redis/lua/reserve.lua``, with the
Redis server's clock; the two must agree (the contract tests check both).

This module is pure: no asyncio, no clock of its own. Callers pass ``now``
from one monotonic clock.
"""

from __future__ import annotations

from ftp_cluster.shared.limits.base import BURST_SECONDS

__all__ = ["EFFECTIVE_BURST_SECONDS", "TokenBucket", "burst_for"]

#: Seconds of its rate a bucket may hold as credit. The contract caps it at
#: one second whatever ``BURST_SECONDS`` says.
EFFECTIVE_BURST_SECONDS = min(BURST_SECONDS, 1.0)


def burst_for(rate: float) -> float:
    """The most credit a bucket at ``rate`` bytes/s may hold, in bytes."""
    return rate * EFFECTIVE_BURST_SECONDS


class TokenBucket:
    """One bucket; :meth:`reserve` is the only operation a transfer needs.

    A new bucket starts with *no* credit rather than a full burst. Starting
    full is conventional, but then a transfer measured from its first byte
    runs ``burst`` bytes ahead of the rate, which makes short transfers
    (and benchmarks of them) exceed the limit by up to ``BURST_SECONDS``
    worth. Starting empty keeps the aggregate exact from the first byte;
    credit only ever comes from idle time after that.
    """

    __slots__ = ("_rate", "level", "updated")

    def __init__(self, rate: int, now: float | None = None) -> None:
        _check_rate(rate)
        self._rate = rate
        #: Credit in bytes; negative while reservations are being paid off.
        self.level = 0.0
        #: When ``level`` was last brought up to date; ``None`` until first use.
        self.updated = now

    @property
    def rate(self) -> int:
        """Bytes per second."""
        return self._rate

    @property
    def burst(self) -> float:
        """The credit cap in bytes."""
        return burst_for(self._rate)

    def set_rate(self, rate: int, now: float) -> None:
        """Change the rate; credit and debt earned so far are kept (credit capped)."""
        _check_rate(rate)
        self.refill(now)
        self._rate = rate
        self.level = min(self.level, self.burst)

    def refill(self, now: float) -> float:
        """Bring the level up to ``now`` and return it."""
        if self.updated is None:
            self.updated = now
        elif now > self.updated:
            # A clock that steps back must not drain the bucket: only forward
            # time counts, and ``updated`` never moves backwards.
            elapsed = now - self.updated
            self.level = min(self.burst, self.level + elapsed * self._rate)
            self.updated = now
        return self.level

    def reserve(self, amount: int, now: float) -> float:
        """Take ``amount`` bytes; return the seconds to wait before moving them."""
        self.refill(now)
        self.level -= amount
        return self.wait()

    def wait(self) -> float:
        """Seconds until the current debt is paid off (0 with credit)."""
        return max(0.0, -self.level / self._rate)


def _check_rate(rate: int) -> None:
    if rate <= 0:
        raise ValueError(f"a bucket's rate must be positive, not {rate!r}")
