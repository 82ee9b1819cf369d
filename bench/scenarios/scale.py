"""Scenario 15: 10,000 logged-in sessions on one host, 1,000 of them downloading at once.

Issue 17's scale test. The widest ftp-cluster (``--workers`` max, 4 by
default) and pyftpdlib (single process, with the run's raised descriptor
limit) each hold ``10 x --idle-sessions`` logged-in sessions (10,000 in a
full run), opened by at least four client processes; with every session held,
the server's process tree is measured (RSS and PSS per session, as in
scenario 6), then ``--idle-sessions`` of them (1,000) RETR ``many.bin`` at
once while the others stay idle. Headline: seconds until the last 226, the
median of ``--repeat-many`` rounds (as scenario 4); also every failure by
kind and whether every byte arrived.

vsftpd is skipped: a process (two with its privilege separation) per session
means 10,000 sessions would need 10,000-20,000 processes; what that costs is
extrapolated in bench/README.md from scenario 6's per-session figures.
aioftp is not one of this scenario's comparisons.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from bench.client import FtpSession, failure_kind
from bench.load import Job, Outcome, Target, execute, open_sessions
from bench.peers.base import Peer, Running, ServeSpec
from bench.peers.ftp_cluster import FtpClusterPeer
from bench.proctree import TreeMemory, tree_memory
from bench.scenarios.base import KIB, MANY, MIB, Context, Figures, RunPlan, counts

__all__ = ["SESSIONS_PER_IDLE", "CrowdJob", "crowd10k", "plan_crowd10k", "summarize_crowd10k"]

SESSIONS_PER_IDLE = 10  # sessions held = 10 x --idle-sessions (10,000 in a full run)
_MIN_CLIENT_PROCS = 4  # one client process cannot hold 10,000 sessions quickly
_LOGIN_CONCURRENCY = 64  # per client process: a steady fill, far under the backlog
_SETTLE = 1.0  # seconds for the server to settle before its memory is read


class CrowdJob(Job):
    """Hold ``count`` sessions; the first ``downloaders`` of them each RETR ``path`` once."""

    def __init__(self, target: Target, count: int, downloaders: int, path: str) -> None:
        super().__init__(target, count)
        self.downloaders = downloaders
        self.path = path

    def share(self, index: int, parts: int) -> Job:
        clone = super().share(index, parts)
        assert isinstance(clone, CrowdJob)
        clone.downloaders = self.downloaders // parts + (
            1 if index < self.downloaders % parts else 0
        )
        return clone

    async def prepare(self) -> None:
        self.sessions = await open_sessions(
            self.target, self.count, _LOGIN_CONCURRENCY, self.prepare_failures
        )

    async def run(self) -> Outcome:
        failures = Counter({f"login: {kind}": n for kind, n in self.prepare_failures.items()})
        outcome = Outcome(started=time.monotonic(), failures=failures)

        async def one(session: FtpSession) -> None:
            try:
                async with asyncio.timeout(self.target.timeout):
                    moved = await session.retr(self.path, None)
            except Exception as exc:  # any failure is counted by kind
                outcome.failures[f"retr: {failure_kind(exc)}"] += 1
                session.abort()
                return
            outcome.ok += 1
            outcome.bytes += moved

        await asyncio.gather(*(one(s) for s in self.sessions[: self.downloaders]))
        outcome.ended = time.monotonic()
        return outcome


def plan_crowd10k(ctx: Context, peers: list[Peer]) -> list[RunPlan]:
    spec = ctx.spec()
    plans = []
    clusters = [peer for peer in peers if isinstance(peer, FtpClusterPeer)]
    if clusters:
        widest = max(clusters, key=lambda peer: peer.workers)
        plans.append(RunPlan(widest.name, widest, spec))
    for peer in peers:
        if peer.name == "pyftpdlib":
            plans.append(RunPlan(peer.name, peer, spec, peer.cannot_serve(spec)))
        elif peer.name == "vsftpd":
            why = "a process per session: see bench/README.md for what 10,000 would cost"
            plans.append(RunPlan(peer.name, peer, spec, why))
        elif not isinstance(peer, FtpClusterPeer):
            plans.append(RunPlan(peer.name, peer, spec, "not compared in this scenario"))
    return plans


async def crowd10k(ctx: Context, server: Running, spec: ServeSpec) -> Figures:
    settings = ctx.settings
    sessions = SESSIONS_PER_IDLE * settings.idle_sessions
    downloaders = settings.idle_sessions
    procs = max(settings.client_procs, _MIN_CLIENT_PROCS)
    target = ctx.target(server)
    warm_up: Counter[str] = Counter()
    for session in await open_sessions(target, 1, 1, warm_up):
        await session.quit()
    await asyncio.sleep(_SETTLE)
    baseline = await asyncio.to_thread(tree_memory, server.pid)
    loaded: list[TreeMemory] = []

    def measure() -> None:
        # Every client process holds its sessions and waits for "go".
        time.sleep(_SETTLE)
        loaded.append(tree_memory(server.pid))

    ctx.reporter.detail(f"{sessions} sessions, {downloaders} x RETR")
    job = CrowdJob(target, sessions, downloaders, MANY)
    outcome = await execute(job, procs, measure)
    login_failures = sum(n for kind, n in outcome.failures.items() if kind.startswith("login"))
    held = sessions - login_failures
    memory = loaded[0] if loaded else baseline
    per = max(1, held)
    size = settings.many_size
    return {
        "sessions": sessions,
        "sessions_held": held,
        "downloaders": downloaders,
        "client_procs": procs,
        "bytes_each": size,
        "seconds": outcome.elapsed,
        "downloads_ok": outcome.ok,
        "failures": counts(outcome.failures),
        "complete": held == sessions
        and outcome.ok == downloaders
        and outcome.bytes == downloaders * size,
        "mb_s_aggregate": outcome.bytes / outcome.elapsed / 1e6 if outcome.elapsed else 0.0,
        "rss_per_session_kib": (memory.rss - baseline.rss) / per / KIB,
        "pss_per_session_kib": (memory.pss - baseline.pss) / per / KIB,
        "uss_per_session_kib": (memory.uss - baseline.uss) / per / KIB,
        "baseline_rss_mib": baseline.rss / MIB,
        "loaded_rss_mib": memory.rss / MIB,
        "loaded_processes": memory.processes,
    }


def summarize_crowd10k(ctx: Context, results: dict[str, Figures]) -> Figures:
    cluster = next((f for label, f in results.items() if label.startswith("ftp-cluster")), None)
    pyftpdlib = results.get("pyftpdlib")
    if not cluster or not pyftpdlib or not pyftpdlib.get("seconds") or "seconds" not in cluster:
        return {}
    return {"time_vs_pyftpdlib": cluster["seconds"] / pyftpdlib["seconds"]}
