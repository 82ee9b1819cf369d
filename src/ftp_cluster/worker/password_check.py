"""Password-hash checks off the event loop: a bounded pool, a bounded queue, a short cache.

A hash costs tens of milliseconds of CPU by design, so a storm of logins
must neither block the loop (transfers and other sessions go on) nor grow
without bound. :class:`PasswordChecks` runs the checks in a small thread
pool of its own (argon2-cffi, bcrypt and hashlib's scrypt release the GIL
while they hash), lets at most ``max_waiting`` more wait for a thread
(beyond that a login is told to come back: :class:`ChecksBusy`), and
remembers a password verified right for ``cache_seconds``.

The cache never holds a password. Its keys are an HMAC, under a random key
drawn per process, of the login, the hash and the password, so the entry
of a password that changed, or of a user whose hash changed, is simply
never found again; a wrong password is never stored at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ftp_cluster.shared.passwords import as_bytes, verify_password

__all__ = ["CheckStats", "ChecksBusy", "PasswordChecks", "default_threads"]

_MAX_WAITING = 256
_MAX_CACHED = 100_000


class ChecksBusy(Exception):
    """Every thread is busy and the queue of waiting checks is full: try again later."""


@dataclass(frozen=True, slots=True)
class CheckStats:
    """What the checks of one server did since start."""

    verified: int  # checks run in the pool
    cached: int  # logins answered from the cache
    busy: int  # logins refused because the queue was full
    in_flight: int  # checks running or waiting now


def default_threads() -> int:
    """One thread fewer than the CPUs this process may use (at least one).

    Each worker process has its own pool; keeping a CPU for the event loop
    is what keeps a running download's rate up while the pool is full.
    """
    return max(1, len(os.sched_getaffinity(0)) - 1)


class PasswordChecks:
    """Checks of passwords against hashes for one server's sessions."""

    def __init__(
        self,
        *,
        cache_seconds: float | None,
        threads: int | None = None,
        max_waiting: int = _MAX_WAITING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threads = threads if threads is not None else default_threads()
        self._limit = self.threads + max_waiting
        self._cache_seconds = cache_seconds or 0.0
        self._clock = clock
        self._key = os.urandom(32)
        self._cache: OrderedDict[bytes, float] = OrderedDict()  # key -> expiry, oldest first
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # the count changes in pool threads too
        self._in_flight = 0
        self._verified = 0
        self._cached = 0
        self._busy = 0

    async def verify(self, login: str, encoded: str, password: str) -> bool:
        """True if ``password`` matches ``encoded``; raises :class:`ChecksBusy` when full.

        A cancelled caller's check is dropped if it is still waiting; one
        already running ends in its thread (and counts until then).
        """
        key = self._cache_key(login, encoded, password) if self._cache_seconds else None
        if key is not None and self._cached_right(key):
            self._cached += 1
            return True
        with self._lock:
            if self._in_flight >= self._limit:
                self._busy += 1
                raise ChecksBusy
            self._in_flight += 1
        try:
            job = self._executor().submit(verify_password, password, encoded)
        except BaseException:
            self._done(None)
            raise
        job.add_done_callback(self._done)
        right = await asyncio.wrap_future(job)
        self._verified += 1
        if right and key is not None:
            self._remember(key)
        return right

    def stats(self) -> CheckStats:
        return CheckStats(self._verified, self._cached, self._busy, self._in_flight)

    def close(self) -> None:
        """Drop waiting checks and let the running ones end in the background."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._cache.clear()

    # -- internals ----------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        # Made on first use: a worker forked from a process holding the
        # server object starts its own threads.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="password-check")
        return self._pool

    def _done(self, _job: Future[bool] | None) -> None:
        with self._lock:
            self._in_flight -= 1

    def _cache_key(self, login: str, encoded: str, password: str) -> bytes:
        # Lengths first, so no two different triples give the same message.
        parts = (as_bytes(login), encoded.encode("utf-8", "surrogateescape"), as_bytes(password))
        message = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _cached_right(self, key: bytes) -> bool:
        expiry = self._cache.get(key)
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._cache[key]
            return False
        return True

    def _remember(self, key: bytes) -> None:
        now = self._clock()
        cache = self._cache
        cache.pop(key, None)
        cache[key] = now + self._cache_seconds
        # Entries go in in expiry order, so the expired ones are at the front.
        while cache and (len(cache) > _MAX_CACHED or next(iter(cache.values())) <= now):
            cache.popitem(last=False)
