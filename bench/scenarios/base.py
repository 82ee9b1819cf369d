"""What every scenario shares: settings, the context of a run, plans, and small helpers.

A scenario (:class:`Scenario`) runs against one started server and returns a
dict of JSON-able figures; its ``headline`` names the figure the table and the
charts show.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from bench.client import FtpSession
from bench.files import Dataset
from bench.load import Target, open_sessions
from bench.peers.base import Peer, Running, ServeSpec, TLSFiles
from bench.private_postgres import PrivatePostgres
from bench.private_redis import PrivateRedis

__all__ = [
    "KIB",
    "MANY",
    "MAX_CHURN_SESSIONS",
    "MB",
    "MIB",
    "SINGLE",
    "THROTTLE",
    "Context",
    "Figures",
    "Reporter",
    "RunPlan",
    "Scenario",
    "Settings",
    "TLSTally",
    "bounded",
    "counts",
    "failed_sessions",
    "one_session",
    "plan_all",
    "summarize_nothing",
]

Figures = dict[str, Any]
_T = TypeVar("_T")

SINGLE = "/files/single.bin"
MANY = "/files/many.bin"
THROTTLE = "/files/throttle.bin"
MB = 1e6
KIB = 1024
MIB = 1 << 20
MAX_CHURN_SESSIONS = 1_000_000  # per churn run, far above what 10 s can reach


@dataclass(frozen=True)
class Settings:
    """Sizes, counts and durations of one benchmark run."""

    single_size: int
    many_size: int
    clients: int
    idle_sessions: int
    churn_clients: int
    duration: float
    repeat: int
    repeat_many: int  # rounds of scenarios 3 to 5 across the servers; the median counts
    client_procs: int
    throttle_rate: int
    throttle_streams: int
    timeout: float

    @property
    def throttle_size(self) -> int:
        """Per stream, so that the throttled transfers last about ``duration``."""
        return max(64 * KIB, int(self.throttle_rate * self.duration / self.throttle_streams))


class Reporter:
    """What a scenario may tell the user while it runs (the progress line)."""

    def detail(self, text: str) -> None:
        """Replace the detail part of the progress line."""


@dataclass
class Context:
    """What every scenario run gets besides the server: settings, files, account, helpers."""

    settings: Settings
    dataset: Dataset
    user: str
    password: str
    redis: PrivateRedis | None = None
    raw_sender: Running | None = None  # the raw sendfile sender, while scenario 1 runs
    raw_rates: list[float] = field(default_factory=list)  # every raw measurement of the run
    raw_tls_sender: Running | None = None  # the raw TLS sender, from scenario 10 on
    raw_tls_rates: list[float] = field(default_factory=list)
    reporter: Reporter = field(default_factory=Reporter)
    tls: TLSFiles | None = None  # the run's certificate, when FTPS scenarios run
    postgres: PrivatePostgres | None = None  # the private PostgreSQL, when scenario 16 runs
    postgres_missing: str | None = None  # why there is none (scenario 16 says so)

    def spec(self, **changes: Any) -> ServeSpec:
        return replace(ServeSpec(self.dataset.root, self.user, self.password), **changes)

    def target(self, server: Running) -> Target:
        ca = None if server.tls_ca is None else str(server.tls_ca)
        timeout = self.settings.timeout
        return Target(server.host, server.port, self.user, self.password, timeout, ca)


@dataclass(frozen=True)
class RunPlan:
    """One server run within a scenario: its label, server, settings, or why it is skipped."""

    label: str
    peer: Peer
    spec: ServeSpec
    skip: str | None = None


ScenarioRun = Callable[[Context, Running, ServeSpec], Awaitable[Figures]]
Planner = Callable[[Context, list[Peer]], list[RunPlan]]
Summarizer = Callable[[Context, dict[str, Figures]], Figures]
Merger = Callable[[list[Figures]], Figures]


def plan_all(ctx: Context, peers: list[Peer]) -> list[RunPlan]:
    spec = ctx.spec()
    return [RunPlan(peer.name, peer, spec, peer.cannot_serve(spec)) for peer in peers]


def summarize_nothing(ctx: Context, results: dict[str, Figures]) -> Figures:
    return {}


@dataclass(frozen=True)
class Scenario:
    """One scenario: how to run it against a server, which servers, how to sum it up."""

    number: int
    key: str
    title: str
    headline: str  # the figure the table and charts show
    unit: str
    lower_is_better: bool
    run: ScenarioRun
    plan: Planner = plan_all
    summarize: Summarizer = summarize_nothing
    # Set for a scenario run in ``repeat_many`` rounds, each server once per
    # round (the order alternating), and merged per server: the runs that a
    # ratio compares are then seconds apart, not minutes, and the machine's
    # drift hits every server alike. None: one run per server.
    merge: Merger | None = None


@dataclass
class TLSTally:
    """What the FTPS sessions of a run negotiated: versions, data connections resumed."""

    versions: Counter[str] = field(default_factory=Counter)
    data_connections: int = 0
    data_resumed: int = 0

    def add(self, session: FtpSession) -> None:
        if session.tls_version is not None:
            self.versions[session.tls_version] += 1
        self.data_connections += session.data_connections
        self.data_resumed += session.data_resumed

    def figures(self) -> Figures:
        """Nothing for a plain FTP run."""
        if not self.versions:
            return {}
        tls = {"versions": counts(self.versions), "data_connections": self.data_connections}
        return {"tls": tls | {"data_resumed": self.data_resumed}}


async def bounded(coro: Awaitable[_T], timeout: float) -> _T:
    async with asyncio.timeout(timeout):
        return await coro


def failed_sessions(figures: dict[str, Any]) -> dict[str, int]:
    """Failed sessions of a run, summed by kind over all its ``*failures`` figures."""
    failed: dict[str, int] = {}
    for key, counts in figures.items():
        if key.endswith("failures") and isinstance(counts, dict):
            for kind, count in counts.items():
                failed[kind] = failed.get(kind, 0) + int(count)
    return failed


def counts(counter: Counter[str]) -> dict[str, int]:
    return dict(counter.most_common())


async def one_session(ctx: Context, server: Running, failures: Counter[str]) -> FtpSession | None:
    sessions = await open_sessions(ctx.target(server), 1, 1, failures)
    return sessions[0] if sessions else None
