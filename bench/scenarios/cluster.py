"""Scenarios 8 and 9: what the cluster-wide limits cost and how exact they are (Redis)."""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from bench.load import ChurnJob, RetrJob, execute
from bench.peers.base import Peer, Running, ServeSpec
from bench.peers.ftp_cluster import FtpClusterPeer, status
from bench.private_redis import CommandCounter
from bench.scenarios.base import MIB, THROTTLE, Context, Figures, RunPlan, counts
from bench.scenarios.crowd import churn_run

__all__ = ["plan_redis_cost", "plan_throttle", "redis_cost", "summarize_redis_cost", "throttle"]

_REDIS_COUNT_SESSIONS = 200  # sessions counted under MONITOR in scenario 9

# --- 8. throttle accuracy and Redis commands per MiB ---------------------------------------------


def plan_throttle(ctx: Context, peers: list[Peer]) -> list[RunPlan]:
    limit = ctx.settings.throttle_rate
    plans = []
    clusters = [peer for peer in peers if isinstance(peer, FtpClusterPeer)]
    if clusters:
        widest = max(clusters, key=lambda peer: peer.workers)
        if ctx.redis is None:
            plans.append(RunPlan(widest.name, widest, ctx.spec(), "no private redis-server"))
        else:
            spec = ctx.spec(write_speed_limit=limit, redis_url=ctx.redis.url)
            plans.append(RunPlan(widest.name, widest, spec))
    for peer in peers:
        if not isinstance(peer, FtpClusterPeer):
            spec = ctx.spec(write_speed_limit=limit)
            plans.append(RunPlan(peer.name, peer, spec, peer.cannot_serve(spec)))
    return plans


async def throttle(ctx: Context, server: Running, spec: ServeSpec) -> Figures:
    settings = ctx.settings
    limit = spec.write_speed_limit or 0
    streams = settings.throttle_streams
    counter = None
    if spec.redis_url is not None and ctx.redis is not None:
        counter = await asyncio.to_thread(CommandCounter, ctx.redis.port)
    marks: dict[str, int] = {}
    try:
        before = counter.total() if counter else 0

        def ready() -> None:
            if counter is not None:
                marks["logged_in"] = counter.total()

        ctx.reporter.detail(f"{streams} x RETR at {limit / MIB:g} MiB/s")
        job = RetrJob(ctx.target(server), streams, THROTTLE, metered=True)
        outcome = await execute(job, 1, ready)
        if counter is not None:
            marks["transferred"] = counter.total()
            await asyncio.to_thread(counter.settle)
    finally:
        if counter is not None:
            counter.close()
    rate = outcome.bytes / outcome.elapsed if outcome.elapsed else 0.0
    series = outcome.rate_series()
    middle = [value for _t, value in series[1:-1]]
    mib = outcome.bytes / MIB
    figures: Figures = {
        "limit_bytes_s": limit,
        "streams": streams,
        "bytes": outcome.bytes,
        "seconds": outcome.elapsed,
        "ok": outcome.ok,
        "failures": counts(outcome.failures),
        "rate_bytes_s": rate,
        "pct_of_limit": 100 * rate / limit if limit else None,
        "steady_pct_of_limit": 100 * statistics.mean(middle) / limit if middle and limit else None,
        "rate_series": [[round(t, 3), round(value)] for t, value in series],
    }
    if counter is not None:
        total = counter.total() - before
        during = marks.get("transferred", 0) - marks.get("logged_in", 0)
        figures |= {
            "redis_commands": total,
            "redis_commands_per_mib": total / mib if mib else None,
            "redis_commands_during_transfers": during,
            "redis_commands_per_mib_during_transfers": during / mib if mib else None,
            "redis_script_commands": counter.script_commands,
            "redis_commands_by_name": counter.snapshot(),
        }
        cluster = await asyncio.to_thread(status, server)
        figures["cluster_status"] = cluster
        # SO_REUSEPORT hashes connections onto workers; this shows how they fell.
        workers = cluster.get("workers") if cluster else None
        if isinstance(workers, list):
            figures["bytes_per_worker"] = [w.get("bytes_downloaded") for w in workers]
    return figures


# --- 9. Redis cost: churn with the Redis backend vs the in-process one ----------------------------


def plan_redis_cost(ctx: Context, peers: list[Peer]) -> list[RunPlan]:
    if not any(isinstance(peer, FtpClusterPeer) for peer in peers):
        return []
    peer = next(
        (p for p in peers if isinstance(p, FtpClusterPeer) and p.workers == 1), FtpClusterPeer(1)
    )
    # Connection limits far above the load make admission count every session.
    caps: dict[str, Any] = {"maximum_connections": 100_000, "maximum_connections_per_ip": 100_000}
    local = RunPlan(f"{peer.name} in-process", peer, ctx.spec(**caps))
    if ctx.redis is None:
        return [local, RunPlan(f"{peer.name} redis", peer, ctx.spec(), "no private redis-server")]
    remote = RunPlan(f"{peer.name} redis", peer, ctx.spec(redis_url=ctx.redis.url, **caps))
    defended = RunPlan(
        f"{peer.name} redis+defender",
        peer,
        ctx.spec(redis_url=ctx.redis.url, defender=True, **caps),
    )
    return [local, remote, defended]


async def redis_cost(ctx: Context, server: Running, spec: ServeSpec) -> Figures:
    settings = ctx.settings
    ctx.reporter.detail(f"{settings.churn_clients} clients for {settings.duration:g} s")
    redis = ctx.redis if spec.redis_url is not None else None
    calls_before, cpu_before = redis.load() if redis is not None else (0, 0.0)
    figures = await churn_run(ctx, server, settings.churn_clients, settings.duration)
    figures["backend"] = "redis" if spec.redis_url else "in-process"
    if spec.defender:
        figures["backend"] = "redis+defender"
    if redis is None:
        return figures
    if figures.get("sessions"):
        # Under load the worker batches lease changes; these show what that buys.
        calls, cpu = redis.load()
        figures["redis_scripts_per_session_loaded"] = (calls - calls_before) / figures["sessions"]
        figures["redis_cpu_us_per_session"] = 1e6 * (cpu - cpu_before) / figures["sessions"]
    # Counted in a separate, short run: MONITOR itself slows Redis down.
    ctx.reporter.detail("counting Redis commands per session")
    counter = await asyncio.to_thread(CommandCounter, redis.port)
    try:
        counted_before = counter.total()
        job = ChurnJob(ctx.target(server), 1, settings.duration, _REDIS_COUNT_SESSIONS)
        counted = await execute(job)
        await asyncio.to_thread(counter.settle)
        commands = counter.total() - counted_before
        figures["redis_commands_per_session"] = commands / counted.ok if counted.ok else None
        figures["redis_commands_by_name"] = counter.snapshot()
    finally:
        counter.close()
    return figures


def summarize_redis_cost(ctx: Context, results: dict[str, Figures]) -> Figures:
    local = next((f for f in results.values() if f.get("backend") == "in-process"), None)
    remote = next((f for f in results.values() if f.get("backend") == "redis"), None)
    if not local or not remote or not local.get("sessions_per_s"):
        return {}
    ratio = remote["sessions_per_s"] / local["sessions_per_s"]
    summary: Figures = {"redis_vs_in_process": ratio, "redis_cost_pct": 100 * (1 - ratio)}
    defended = next((f for f in results.values() if f.get("backend") == "redis+defender"), None)
    if defended and defended.get("sessions_per_s") and remote.get("sessions_per_s"):
        # The defender's cost on top of the Redis backend it runs on.
        shield = defended["sessions_per_s"] / remote["sessions_per_s"]
        summary |= {"defender_vs_redis": shield, "defender_cost_pct": 100 * (1 - shield)}
    return summary
