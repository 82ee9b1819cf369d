"""The idle sweeper on a real event loop (sessions end to end: tests/e2e)."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from ftp_cluster.worker.idle import IdleSweeper


class Session:
    """Records when the sweeper found it idle for its timeout."""

    def __init__(self, last_activity: float) -> None:
        self.last_activity = last_activity
        self.expired_at: float | None = None

    def expire_if_idle(self, now: float, timeout: float) -> None:
        if self.expired_at is None and now - self.last_activity >= timeout:
            self.expired_at = now


def test_idle_sessions_expire_within_a_sweep_of_their_timeout() -> None:
    async def main() -> None:
        started = time.monotonic()
        quiet, chatty = Session(started), Session(started)
        sessions = {quiet, chatty}
        sweeper = IdleSweeper(lambda: sessions, timeout=1.0)
        sweeper.start()
        sweeper.start()  # no second timer
        try:
            for _ in range(14):
                await asyncio.sleep(0.1)
                chatty.last_activity = time.monotonic()
            assert quiet.expired_at is not None and chatty.expired_at is None
            # Between the timeout and one sweep interval (timeout / 4) after
            # it, with room for a loaded machine.
            assert 1.0 <= quiet.expired_at - started <= 1.0 + 0.25 + 0.5
        finally:
            sweeper.stop()
        chatty.last_activity = 0.0
        await asyncio.sleep(0.6)
        assert chatty.expired_at is None  # stopped: no more sweeps

    uvloop.run(main())


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        IdleSweeper(lambda: (), timeout=0)
