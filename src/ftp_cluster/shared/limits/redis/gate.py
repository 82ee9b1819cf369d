"""A shared/exclusive gate for the Redis backend's lease work."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["Gate"]


class Gate:
    """Lease changes run concurrently with each other; a resync runs alone.

    A resync rewrites the worker's whole lease set from a snapshot, so a
    lease change racing it could be undone. A waiting resync goes first, so
    a steady stream of logins cannot starve it. Exclusive holders (the
    resync, and ``settled()``, which only waits for its turn) take turns,
    and lease changes stay out until none is left waiting. Entering shared
    access costs no await unless an exclusive holder is waiting or inside:
    it happens for every session.
    """

    def __init__(self) -> None:
        self._active = 0
        self._exclusive = 0  # exclusive holders waiting or inside
        self._turn = asyncio.Lock()  # held by the one inside
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()

    async def __aenter__(self) -> None:
        """Shared access (``async with gate:``); a plain method pair, no generator."""
        while self._exclusive:
            await self._open.wait()
        self._active += 1

    async def __aexit__(self, *_: object) -> None:
        self.leave()

    def hold(self) -> None:
        """One more shared holder, from inside shared access; :meth:`leave` ends it.

        For work that outlives the ``async with`` block it was started in.
        """
        self._active += 1

    def leave(self, holders: int = 1) -> None:
        """End ``holders`` shared holds; the last one lets a waiting exclusive holder in."""
        self._active -= holders
        if self._exclusive and not self._active:
            self._idle.set()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Sole access (``async with gate.exclusive():``), once every holder has left."""
        self._exclusive += 1
        self._open.clear()
        try:
            async with self._turn:
                while self._active:
                    self._idle.clear()
                    await self._idle.wait()
                yield
        finally:
            self._exclusive -= 1
            if not self._exclusive:
                self._open.set()
