"""The health guard: one place turns Redis failures into an outage, and ends it.

Outages of the whole backend are tested in test_limits_redis.py; these
tests pin the guard's own rules, with a part that records what it is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.exceptions

from ftp_cluster.shared.limits.redis.health import Health
from ftp_cluster.shared.limits.redis.store import RedisStore
from tests.conftest import RedisServer


class Recorder:
    """A part of the backend that notes every call of :class:`Health` on it."""

    def __init__(self, health: Health, name: str) -> None:
        self.health = health
        self.name = name
        self.calls: list[str] = []

    def lost(self) -> None:
        self.calls.append("lost")

    @contextlib.asynccontextmanager
    async def resync(self) -> AsyncIterator[str]:
        self.calls.append(f"enter healthy={self.health.healthy}")
        yield f"{self.name} resynced"
        self.calls.append(f"leave healthy={self.health.healthy}")

    async def check(self) -> bool:
        return False


def unreachable() -> Health:
    # Nothing listens on port 1: a store that is never asked anything here.
    return Health(
        RedisStore("redis://127.0.0.1:1/0", timeout=0.5), on_failure="open", resync_interval=60
    )


@pytest.mark.parametrize(
    "failure",
    [redis.exceptions.ConnectionError("down"), OSError("reset"), TimeoutError()],
)
def test_a_failure_ends_the_block_and_starts_one_outage(
    failure: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    health = unreachable()
    part = Recorder(health, "part")
    health.watch(part)
    reached = []
    for _ in range(2):
        with health.guard:
            raise failure
        reached.append(True)  # the caller goes on, to its fallback
    assert reached == [True, True]
    assert not health.healthy
    assert part.calls == ["lost"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()


@pytest.mark.parametrize("error", [ValueError("a bug"), asyncio.CancelledError()])
def test_anything_else_propagates_and_changes_nothing(error: BaseException) -> None:
    health = unreachable()
    with pytest.raises(type(error)), health.guard:
        raise error
    assert health.healthy
    assert not health.failed(error)
    assert health.healthy


def test_a_block_without_failure_returns_as_usual() -> None:
    health = unreachable()

    def call() -> int:
        with health.guard:
            return 1
        return 2  # only after a failure

    assert call() == 1
    assert health.healthy


def test_recovery_resyncs_every_part_and_ends_the_outage_before_any_leaves(
    redis_factory: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ftp_cluster.limits")
    server = redis_factory()
    server.stop()

    async def main() -> None:
        store = RedisStore(server.url, timeout=0.5)
        health = Health(store, on_failure="closed", resync_interval=60, probe_interval=0.05)
        parts = [Recorder(health, "first"), Recorder(health, "second")]
        for part in parts:
            health.watch(part)
        health.start()
        try:
            with health.guard:
                await store.command("PING")
            assert not health.healthy
            await asyncio.sleep(0.2)  # probes fail: no resync yet
            assert [part.calls for part in parts] == [["lost"], ["lost"]]
            server.start()
            deadline = time.monotonic() + 5
            while not health.healthy and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert health.healthy
        finally:
            await health.stop()
            await store.close()
        for part in parts:
            assert part.calls == ["lost", "enter healthy=False", "leave healthy=True"]

    asyncio.run(main())
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert "reachable again" in infos[0] and "(first resynced; second resynced)" in infos[0]
