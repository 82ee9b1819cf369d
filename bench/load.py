"""Load jobs: many FTP sessions at once, in this process or fanned out over several.

A job has an untimed ``prepare`` (e.g. log every session in), a timed ``run``
and an untimed ``finish`` (QUIT everything). With several client processes,
each takes a share of the sessions, prepares, reports ready, and all start
``run`` together on a "go" event; CLOCK_MONOTONIC is system-wide, so the
overall time is max(end) - min(start) over the processes.

Every loop is bounded in count and time; every session operation has a timeout,
and a session that fails is counted by reason, never retried silently.
"""

from __future__ import annotations

import abc
import asyncio
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import TypeVar

import uvloop

from bench.client import FtpSession, failure_kind
from bench.ftps import client_context
from bench.receiver import Meter

__all__ = [
    "ChurnJob",
    "Job",
    "LoginJob",
    "Outcome",
    "RetrJob",
    "StorJob",
    "Target",
    "execute",
    "open_sessions",
    "quit_all",
]

_READY_TIMEOUT = 120.0
_QUIT_CONCURRENCY = 256
_T = TypeVar("_T")


@dataclass(frozen=True)
class Target:
    """Where the server listens and how to log in."""

    host: str
    port: int
    user: str
    password: str
    timeout: float = 30.0  # per session operation (connect+login, one transfer)
    tls_ca: str | None = None  # FTPS (AUTH TLS, PROT P), trusting this certificate; None: plain


@dataclass
class Outcome:
    """What a timed run did: when, how many succeeded, why the others failed."""

    started: float = math.inf
    ended: float = 0.0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    slots: dict[int, int] = field(default_factory=dict)  # Meter slots, when metered
    slot: float = 0.25

    @property
    def elapsed(self) -> float:
        return max(0.0, self.ended - self.started)

    def merge(self, other: Outcome) -> Outcome:
        slots = dict(self.slots)
        for index, count in other.slots.items():
            slots[index] = slots.get(index, 0) + count
        return Outcome(
            started=min(self.started, other.started),
            ended=max(self.ended, other.ended),
            ok=self.ok + other.ok,
            failures=self.failures + other.failures,
            bytes=self.bytes + other.bytes,
            slots=slots,
            slot=self.slot,
        )

    def rate_series(self) -> list[tuple[float, float]]:
        """(seconds since start, bytes/s) per meter slot, for rate-over-time charts.

        The first and last slots are only partly inside the run; their rate is
        taken over the part that is, so the edges of the curve are not dips.
        """
        if not self.slots:
            return []
        series = []
        for index in range(min(self.slots), max(self.slots) + 1):
            low = max(self.started, index * self.slot)
            high = min(self.ended, (index + 1) * self.slot)
            if high - low > self.slot / 10:  # a sliver would give a meaningless rate
                series.append((low - self.started, self.slots.get(index, 0) / (high - low)))
        return series


async def _bounded(coro: Awaitable[_T], timeout: float) -> _T:
    async with asyncio.timeout(timeout):
        return await coro


async def _login(target: Target) -> FtpSession:
    tls = client_context(target.tls_ca) if target.tls_ca is not None else None
    session = await FtpSession.open(target.host, target.port, tls)
    try:
        await session.login(target.user, target.password)
    except BaseException:
        session.abort()
        raise
    return session


async def open_sessions(
    target: Target, count: int, concurrency: int, failures: Counter[str]
) -> list[FtpSession]:
    """Log ``count`` sessions in, at most ``concurrency`` at a time; failures are counted."""
    limiter = asyncio.Semaphore(max(1, concurrency))

    async def one() -> FtpSession | None:
        async with limiter:
            try:
                return await _bounded(_login(target), target.timeout)
            except Exception as exc:  # any failure is counted by kind
                failures[failure_kind(exc)] += 1
                return None

    results = await asyncio.gather(*(one() for _ in range(count)))
    return [session for session in results if session is not None]


async def quit_all(sessions: list[FtpSession]) -> None:
    """QUIT every session (bounded concurrency; each QUIT is itself bounded)."""
    limiter = asyncio.Semaphore(_QUIT_CONCURRENCY)

    async def one(session: FtpSession) -> None:
        async with limiter:
            await session.quit()

    await asyncio.gather(*(one(session) for session in sessions))
    sessions.clear()


class Job(abc.ABC):
    """A unit of client load that can be split over processes."""

    def __init__(self, target: Target, count: int) -> None:
        self.target = target
        self.count = count
        self.part = 0  # which share of a fanned-out job this is
        self.sessions: list[FtpSession] = []
        self.prepare_failures: Counter[str] = Counter()

    async def prepare(self) -> None:  # noqa: B027 - optional hook
        """Untimed set-up before the go signal."""

    @abc.abstractmethod
    async def run(self) -> Outcome:
        """The timed part."""

    async def finish(self) -> None:
        await quit_all(self.sessions)

    def share(self, index: int, parts: int) -> Job:
        """This job's ``index``-th share when split over ``parts`` processes."""
        clone = self._copy()
        clone.count = self.count // parts + (1 if index < self.count % parts else 0)
        clone.part = index
        return clone

    def _copy(self) -> Job:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.sessions = []
        clone.prepare_failures = Counter()
        return clone


class LoginJob(Job):
    """Connect and log in ``count`` sessions: all at once, or one after another."""

    def __init__(self, target: Target, count: int, *, sequential: bool) -> None:
        super().__init__(target, count)
        self.sequential = sequential

    async def run(self) -> Outcome:
        outcome = Outcome(started=time.monotonic())
        if self.sequential:
            # One stuck login must not cost count x timeout: the row gets a budget.
            budget = outcome.started + 2 * self.target.timeout
            for attempt in range(self.count):
                if time.monotonic() > budget:
                    outcome.failures["not attempted (time budget)"] += self.count - attempt
                    break
                try:
                    self.sessions.append(await _bounded(_login(self.target), self.target.timeout))
                except Exception as exc:  # any failure is counted by kind
                    outcome.failures[failure_kind(exc)] += 1
        else:
            self.sessions = await open_sessions(
                self.target, self.count, self.count, outcome.failures
            )
        outcome.ended = time.monotonic()
        outcome.ok = len(self.sessions)
        return outcome


class _TransferJob(Job):
    """Log in first (untimed), then run one transfer per session concurrently."""

    login_concurrency = 32  # under vsftpd's fixed backlog, so set-up never overflows it

    async def prepare(self) -> None:
        self.sessions = await open_sessions(
            self.target, self.count, self.login_concurrency, self.prepare_failures
        )

    @abc.abstractmethod
    async def transfer(self, session: FtpSession, index: int, meter: Meter | None) -> int:
        """Move one file over ``session``; returns the bytes moved."""

    metered = False

    async def run(self) -> Outcome:
        meter = Meter() if self.metered else None
        outcome = Outcome(started=time.monotonic(), failures=Counter(self.prepare_failures))

        async def one(index: int, session: FtpSession) -> None:
            try:
                moved = await _bounded(self.transfer(session, index, meter), self.target.timeout)
            except Exception as exc:  # any failure is counted by kind
                outcome.failures[failure_kind(exc)] += 1
                session.abort()
                return
            outcome.ok += 1
            outcome.bytes += moved

        await asyncio.gather(*(one(i, s) for i, s in enumerate(self.sessions)))
        outcome.ended = time.monotonic()
        if meter is not None:
            outcome.slots, outcome.slot = meter.slots, meter.slot
        return outcome


class RetrJob(_TransferJob):
    """Every session downloads ``path`` once."""

    def __init__(self, target: Target, count: int, path: str, *, metered: bool = False) -> None:
        super().__init__(target, count)
        self.path = path
        self.metered = metered

    async def transfer(self, session: FtpSession, index: int, meter: Meter | None) -> int:
        return await session.retr(self.path, meter)


class StorJob(_TransferJob):
    """Every session uploads ``size`` bytes of ``source`` to its own file under ``directory``."""

    def __init__(
        self, target: Target, count: int, *, source: str, size: int, directory: str, tag: str
    ) -> None:
        super().__init__(target, count)
        self.source = source
        self.size = size
        self.directory = directory
        self.tag = tag

    async def transfer(self, session: FtpSession, index: int, meter: Meter | None) -> int:
        fd = os.open(self.source, os.O_RDONLY)
        try:
            name = f"{self.directory}/{self.tag}-p{self.part}-{index}.bin"
            return await session.stor(name, fd, self.size)
        finally:
            os.close(fd)


class ChurnJob(Job):
    """``count`` clients each loop connect, login, PWD, QUIT until ``duration`` is up."""

    def __init__(self, target: Target, count: int, duration: float, max_sessions: int) -> None:
        super().__init__(target, count)
        self.duration = duration
        self.max_sessions = max_sessions

    def share(self, index: int, parts: int) -> Job:
        clone = super().share(index, parts)
        assert isinstance(clone, ChurnJob)
        clone.max_sessions = max(1, self.max_sessions // parts)
        return clone

    async def run(self) -> Outcome:
        outcome = Outcome(started=time.monotonic())
        deadline = outcome.started + self.duration
        per_client = max(1, self.max_sessions // max(1, self.count))

        async def client() -> None:
            for _ in range(per_client):
                if time.monotonic() >= deadline:
                    return
                try:
                    session = await _bounded(_login(self.target), self.target.timeout)
                    try:
                        await _bounded(session.pwd(), self.target.timeout)
                    finally:
                        await session.quit()
                except Exception as exc:  # any failure is counted by kind
                    outcome.failures[failure_kind(exc)] += 1
                    continue
                outcome.ok += 1

        await asyncio.gather(*(client() for _ in range(self.count)))
        outcome.ended = time.monotonic()
        return outcome


def _child(job: Job, ready: Event, go: Event, results: Connection) -> None:
    async def main() -> None:
        try:
            await job.prepare()
            ready.set()
            if not await asyncio.to_thread(go.wait, _READY_TIMEOUT):
                return
            outcome = await job.run()
            results.send(outcome)
        finally:
            await job.finish()

    uvloop.run(main())


async def execute(
    job: Job, processes: int = 1, on_ready: Callable[[], None] | None = None
) -> Outcome:
    """Run ``job`` over ``processes`` client processes (1: in this process)."""
    if processes <= 1:
        try:
            await job.prepare()
            if on_ready is not None:
                on_ready()
            return await job.run()
        finally:
            await job.finish()
    return await _fan_out(job, processes, on_ready)


async def _fan_out(job: Job, processes: int, on_ready: Callable[[], None] | None) -> Outcome:
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    children = []
    for index in range(processes):
        ready = context.Event()
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_child, args=(job.share(index, processes), ready, go, sender), daemon=True
        )
        process.start()
        children.append((process, ready, receiver))
    try:
        for _process, ready, _receiver in children:
            if not await asyncio.to_thread(ready.wait, _READY_TIMEOUT):
                raise TimeoutError("a client process did not get ready")
        if on_ready is not None:
            on_ready()
        go.set()
        outcome = Outcome()
        for _process, _ready, receiver in children:
            if not await asyncio.to_thread(receiver.poll, _READY_TIMEOUT + job.target.timeout):
                raise TimeoutError("a client process did not report")
            outcome = outcome.merge(receiver.recv())
        return outcome
    finally:
        for process, _ready, _receiver in children:
            await asyncio.to_thread(process.join, 30)
            if process.is_alive():
                process.kill()
                process.join(5)
