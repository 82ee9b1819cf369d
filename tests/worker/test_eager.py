"""Eager start: inline until the first wait, a task that behaves like one after."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from ftp_cluster.worker.eager import start_eagerly

Scenario = Callable[[], Coroutine[Any, Any, None]]
Run = Callable[[Scenario], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Run a scenario on a fresh loop of either kind (workers use uvloop)."""

    def runner(scenario: Scenario) -> None:
        if request.param == "uvloop":
            uvloop.run(scenario())
        else:
            asyncio.run(scenario())

    return runner


def test_a_coroutine_that_never_waits_finishes_inline(run: Run) -> None:
    async def scenario() -> None:
        steps: list[str] = []

        async def work() -> None:
            steps.append("ran")

        assert start_eagerly(work()) is None
        assert steps == ["ran"]

    run(scenario)


def test_it_runs_inline_up_to_the_first_wait_then_as_a_task(
    run: Run,
) -> None:
    async def scenario() -> None:
        steps: list[str] = []
        gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def work() -> int:
            steps.append("before")
            value = await gate
            steps.append("after")
            return value * 2

        task = start_eagerly(work())
        assert steps == ["before"]  # already ran, before any loop iteration
        assert task is not None and not task.done()
        gate.set_result(21)
        assert await task == 42
        assert steps == ["before", "after"]

    run(scenario)


def test_several_waits_and_sleeps_are_followed(run: Run) -> None:
    async def scenario() -> None:
        async def work() -> int:
            total = 0
            for value in range(3):
                await asyncio.sleep(0)  # a bare yield
                await asyncio.sleep(0.001)  # a timer future
                total += value
            return total

        task = start_eagerly(work())
        assert task is not None
        assert await task == 3

    run(scenario)


def test_an_error_before_the_first_wait_reaches_the_caller(run: Run) -> None:
    async def scenario() -> None:
        async def work() -> None:
            raise ValueError("early")

        with pytest.raises(ValueError, match="early"):
            start_eagerly(work())

    run(scenario)


def test_an_error_after_a_wait_is_the_task_s(run: Run) -> None:
    async def scenario() -> None:
        async def work() -> None:
            await asyncio.sleep(0)
            raise ValueError("late")

        task = start_eagerly(work())
        assert task is not None
        with pytest.raises(ValueError, match="late"):
            await task

    run(scenario)


def test_cancelling_the_task_cancels_the_coroutine_where_it_waits(
    run: Run,
) -> None:
    async def scenario() -> None:
        seen: list[str] = []
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def work() -> None:
            try:
                await gate
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
            finally:
                seen.append("cleaned up")

        task = start_eagerly(work())
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen == ["cancelled", "cleaned up"]
        assert gate.cancelled()  # the awaited future was cancelled, as a task does

    run(scenario)


def test_a_coroutine_may_catch_the_cancellation_and_return(run: Run) -> None:
    async def scenario() -> None:
        async def work() -> str:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                return "stopped cleanly"
            return "slept"

        task = start_eagerly(work())
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        assert await task == "stopped cleanly"

    run(scenario)
