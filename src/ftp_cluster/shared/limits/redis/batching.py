"""Coalescing of many small requests into one call, one call at a time.

Sessions of a busy worker ask the Redis backend for leases all the time, and
a round trip per request costs far more client and server CPU than the
request itself. A :class:`Batcher` collects the requests submitted while the
event loop runs its current callbacks, and while the previous batch is still
in flight, and hands them to one ``send`` call; each caller then gets its
own result. Under light load a request goes out on the next loop iteration,
alone; under heavy load batches grow by themselves, with no timer to tune.

An item nobody waits for (``push(item, urgent=False)``, or ``post(item)``
with no future at all) may wait up to ``linger`` seconds for company: a
burst of them then costs one call, not one per loop iteration. Any urgent
item takes the waiting ones along at once, and so does a full batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeAlias, TypeVar

__all__ = ["Batcher"]

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Most requests in one call, so that one call (a Redis script) stays short.
MAX_BATCH = 256

#: What ``on_posted`` gets for the posted items of one batch: their results
#: in order, or the exception ``send`` raised (CancelledError included).
Posted: TypeAlias = "Sequence[Result] | BaseException"


class Batcher(Generic[Item, Result]):
    """Submit items one by one, have them sent in batches by ``send``.

    ``send`` receives the items in submission order and returns one result
    per item, in the same order; if it raises, every caller of that batch
    gets the exception. At most one ``send`` runs at a time, so batches
    reach the other side in submission order. Items sent with :meth:`post`
    report to ``on_posted``, once per batch. An instance belongs to the
    event loop it is first used on.
    """

    def __init__(
        self,
        send: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch: int = MAX_BATCH,
        linger: float = 0.0,
        on_posted: Callable[[list[Item], Posted[Result]], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch!r}")
        if linger < 0:
            raise ValueError(f"linger must not be negative, not {linger!r}")
        self._send = send
        self._max_batch = max_batch
        self._linger = linger
        self._on_posted = on_posted
        self._items: list[Item] = []
        self._futures: list[asyncio.Future[Result] | None] = []  # None: posted
        self._urgent = False  # an item someone waits for is queued
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None
        # Asked for once, not per item: on Python 3.11 get_running_loop()
        # makes a getpid() system call each time.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: Item) -> Result:
        """Queue ``item`` for the next batch and wait for its result."""
        return await self.push(item)

    def push(self, item: Item, *, urgent: bool = True) -> asyncio.Future[Result]:
        """Queue ``item`` for the next batch; the future gets its result.

        For a caller that need not wait: it may attach a callback instead, and
        pass ``urgent=False`` to let the item linger. Cancelling the future
        withdraws nothing (the item may be sent anyway).
        """
        future: asyncio.Future[Result] = self._event_loop().create_future()
        self._items.append(item)
        self._futures.append(future)
        self._urgent = self._urgent or urgent
        self._schedule()
        return future

    def post(self, item: Item) -> None:
        """Queue ``item`` like ``push(item, urgent=False)``, with no future.

        Its result goes to ``on_posted`` with those of the other posted
        items of its batch: cheaper than a future and a callback per item.
        """
        if self._on_posted is None:
            raise RuntimeError("post() needs a Batcher built with on_posted")
        self._items.append(item)
        self._futures.append(None)
        self._schedule()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _schedule(self) -> None:
        if self._running is not None:
            return  # the batch in flight schedules the next one when it ends
        # A full batch has all the company it can get; lingering on would
        # only let a backlog grow faster than batches drain it.
        if self._urgent or len(self._items) >= self._max_batch:
            if not self._scheduled:
                self._scheduled = True
                self._event_loop().call_soon(self._flush)
        elif self._timer is None:
            self._timer = self._event_loop().call_later(self._linger, self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running is not None or not self._items:
            return
        count = self._max_batch
        if len(self._items) <= count:  # the usual case: take all, copy nothing
            items, self._items = self._items, []
            futures, self._futures = self._futures, []
            self._urgent = False
        else:
            items, self._items = self._items[:count], self._items[count:]
            futures, self._futures = self._futures[:count], self._futures[count:]
        self._running = self._event_loop().create_task(self._run(items, futures))

    async def _run(self, items: list[Item], futures: list[asyncio.Future[Result] | None]) -> None:
        try:
            results = await self._send(items)
            if len(results) != len(items):
                raise RuntimeError(f"{len(results)} results for {len(items)} requests")
        except asyncio.CancelledError as exc:
            for future in futures:
                if future is not None:
                    future.cancel()
            self._report(items, futures, exc)
            raise
        except Exception as exc:
            for future in futures:
                if future is not None and not future.done():
                    future.set_exception(exc)
            self._report(items, futures, exc)
        else:
            for future, result in zip(futures, results, strict=True):
                # A caller that was cancelled meanwhile has gone away.
                if future is not None and not future.done():
                    future.set_result(result)
            self._report(items, futures, results)
        finally:
            self._running = None
            if self._items:
                # Urgent ones waited for the previous batch already: straight on.
                self._schedule()

    def _report(
        self,
        items: list[Item],
        futures: list[asyncio.Future[Result] | None],
        outcome: Posted[Result],
    ) -> None:
        if self._on_posted is None:
            return
        posted = [n for n, future in enumerate(futures) if future is None]
        if not posted:
            return
        if len(posted) == len(items):
            self._on_posted(items, outcome)
        elif isinstance(outcome, BaseException):
            self._on_posted([items[n] for n in posted], outcome)
        else:
            self._on_posted([items[n] for n in posted], [outcome[n] for n in posted])
