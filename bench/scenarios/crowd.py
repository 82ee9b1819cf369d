"""Scenarios 3 to 7: many sessions at once (logins, transfers, idle memory, churn)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace

from bench.load import (
    ChurnJob,
    LoginJob,
    Outcome,
    RetrJob,
    StorJob,
    execute,
    open_sessions,
    quit_all,
)
from bench.peers.base import Running, ServeSpec
from bench.proctree import tree_memory
from bench.scenarios.base import (
    KIB,
    MANY,
    MAX_CHURN_SESSIONS,
    MB,
    MIB,
    Context,
    Figures,
    counts,
)

__all__ = ["churn", "churn_run", "idle_memory", "login", "retr_many", "stor_many"]

_IDLE_LOGIN_CONCURRENCY = 32  # vsftpd's backlog is 32: stay under it while filling up
_SETTLE = 1.0  # seconds for a server to settle before reading its memory
_LOGIN_TIMEOUT = 10.0  # seconds one login may take in scenario 3
_WARM_UP_TIMEOUT = 3.0  # the same, in its untimed warm-up (vsftpd's backlog drops some)

# --- 3. N clients connect and log in ------------------------------------------------------------


async def login(ctx: Context, server: Running, spec: ServeSpec) -> Figures:
    # A login that takes longer than this has failed for any client (vsftpd's
    # 32-deep backlog leaves some connections waiting for a greeting for good).
    target = replace(ctx.target(server), timeout=min(ctx.settings.timeout, _LOGIN_TIMEOUT))
    clients = ctx.settings.clients
    # The first burst of connections in a run is slow for reasons of the
    # client and the kernel (their memory for 300 sockets is cold), and
    # whichever server came first paid for it: 0.070 s for ftp-cluster-1 first
    # and 0.054 s second, 0.039 s for pyftpdlib second and 0.059 s first. An
    # untimed burst against each server first puts them all on the same footing.
    ctx.reporter.detail(f"{clients} at once (warm-up, untimed)")
    warm_up = replace(target, timeout=min(target.timeout, _WARM_UP_TIMEOUT))
    await execute(LoginJob(warm_up, clients, sequential=False), ctx.settings.client_procs)
    ctx.reporter.detail(f"{clients} at once")
    concurrent = await execute(
        LoginJob(target, clients, sequential=False), ctx.settings.client_procs
    )
    ctx.reporter.detail(f"{clients} one after another")
    sequential = await execute(LoginJob(target, clients, sequential=True))
    return {
        "clients": clients,
        "concurrent_s": concurrent.elapsed,
        "concurrent_ok": concurrent.ok,
        "concurrent_failures": counts(concurrent.failures),
        "sequential_s": sequential.elapsed,
        "sequential_ok": sequential.ok,
        "sequential_failures": counts(sequential.failures),
    }


def merge_login_rounds(rounds: list[Figures]) -> Figures:
    """Logins at once and in a row, each from its own median round, with every round's time."""
    ended = _ended(rounds)
    if ended is not None:
        return ended
    merged: Figures = {"clients": rounds[0]["clients"]}
    for kind in ("concurrent", "sequential"):
        median, times = _median_round(rounds, f"{kind}_s")
        for name in ("s", "ok", "failures"):
            merged[f"{kind}_{name}"] = median[f"{kind}_{name}"]
        merged[f"{kind}_runs_s"] = [round(seconds, 4) for seconds in times]
    return _with_log(merged, rounds)


def _median_round(rounds: list[Figures], key: str) -> tuple[Figures, list[float]]:
    """The round with the median ``key``, and every round's ``key`` in round order."""
    times = [float(figures[key]) for figures in rounds]
    order = sorted(range(len(rounds)), key=times.__getitem__)
    return rounds[order[len(order) // 2]], times


def _ended(rounds: list[Figures]) -> Figures | None:
    """A round that was skipped or failed: then there is nothing to take a median of."""
    return next((figures for figures in rounds if "skipped" in figures or "error" in figures), None)


def _with_log(merged: Figures, rounds: list[Figures]) -> Figures:
    """``merged`` pointing to the log of the first round that kept one (sessions failed)."""
    logs = [figures["log"] for figures in rounds if "log" in figures]
    return merged | {"log": logs[0]} if logs else merged


# --- 4./5. N concurrent RETRs / STORs -----------------------------------------------------------


def _transfer_figures(outcome: Outcome, moved: int, clients: int, size: int) -> Figures:
    return {
        "clients": clients,
        "bytes_each": size,
        "seconds": outcome.elapsed,
        "ok": outcome.ok,
        "failures": counts(outcome.failures),
        "mb_s_aggregate": moved / outcome.elapsed / MB if outcome.elapsed else 0.0,
        "complete": outcome.ok == clients and moved == clients * size,
    }


def merge_transfer_rounds(rounds: list[Figures]) -> Figures:
    """The median round's figures (by time), with every round's time beside them.

    One run of 300 transfers swings by 2x on this kind of machine (loopback
    is bimodal, and the machine drifts), for every server alike: the median
    of a few rounds, each taken minutes apart from the others but seconds
    apart from the other servers' runs of that round, is the figure.
    """
    ended = _ended(rounds)
    if ended is not None:
        return ended
    median, times = _median_round(rounds, "seconds")
    merged = dict(median)
    merged["runs_s"] = [round(seconds, 3) for seconds in times]
    merged["complete"] = all(figures["complete"] for figures in rounds)
    if len(times) > 1 and max(times) > 1.3 * min(times):
        merged["warning"] = (
            f"runs spread from {min(times):.2f} to {max(times):.2f} s: loopback is bimodal "
            "or the machine is busy; the median counts"
        )
    return _with_log(merged, rounds)


async def retr_many(ctx: Context, server: Running, spec: ServeSpec) -> Figures:
    """One round: every client downloads the same file once, all at once."""
    settings = ctx.settings
    clients, size = settings.clients, settings.many_size
    ctx.reporter.detail(f"{clients} x RETR")
    outcome = await execute(RetrJob(ctx.target(server), clients, MANY), settings.client_procs)
    return _transfer_figures(outcome, outcome.bytes, clients, size)


async def stor_many(ctx: Context, server: Running, spec: ServeSpec) -> Figures:
    """One round: every client uploads its own file, all at once."""
    settings = ctx.settings
    clients, size = settings.clients, settings.many_size
    ctx.reporter.detail(f"{clients} x STOR")
    ctx.dataset.clear_uploads()
    ctx.dataset.warm(clients * size)
    job = StorJob(
        ctx.target(server),
        clients,
        source=str(ctx.dataset.real(MANY)),
        size=size,
        directory="/upload",
        tag="many",
    )
    outcome = await execute(job, settings.client_procs)
    # What the server wrote, not what the client sent.
    return _transfer_figures(outcome, ctx.dataset.upload_bytes(), clients, size)


# --- 6. memory per idle logged-in session --------------------------------------------------------


async def idle_memory(ctx: Context, server: Running, spec: ServeSpec) -> Figures:
    target, count = ctx.target(server), ctx.settings.idle_sessions
    failures: Counter[str] = Counter()
    # One session first, so lazily loaded code is in the baseline, not in the delta.
    await quit_all(await open_sessions(target, 1, 1, failures))
    await asyncio.sleep(_SETTLE)
    baseline = await asyncio.to_thread(tree_memory, server.pid)
    ctx.reporter.detail(f"opening {count} sessions")
    sessions = await open_sessions(target, count, _IDLE_LOGIN_CONCURRENCY, failures)
    opened = len(sessions)
    held = max(1, opened)
    try:
        ctx.reporter.detail(f"{len(sessions)} idle sessions")
        await asyncio.sleep(_SETTLE)
        loaded = await asyncio.to_thread(tree_memory, server.pid)
    finally:
        await quit_all(sessions)
    return {
        "sessions": opened,
        "failures": counts(failures),
        "rss_per_session_kib": (loaded.rss - baseline.rss) / held / KIB,
        "uss_per_session_kib": (loaded.uss - baseline.uss) / held / KIB,
        "pss_per_session_kib": (loaded.pss - baseline.pss) / held / KIB,
        "baseline_rss_mib": baseline.rss / MIB,
        "loaded_rss_mib": loaded.rss / MIB,
        "baseline_processes": baseline.processes,
        "loaded_processes": loaded.processes,
    }


# --- 7. connection churn ----------------------------------------------------------------------


async def churn_run(ctx: Context, server: Running, clients: int, duration: float) -> Figures:
    job = ChurnJob(ctx.target(server), clients, duration, MAX_CHURN_SESSIONS)
    outcome = await execute(job, ctx.settings.client_procs)
    return {
        "clients": clients,
        "seconds": outcome.elapsed,
        "sessions": outcome.ok,
        "sessions_per_s": outcome.ok / outcome.elapsed if outcome.elapsed else 0.0,
        "failures": counts(outcome.failures),
    }


async def churn(ctx: Context, server: Running, spec: ServeSpec) -> Figures:
    ctx.reporter.detail(f"{ctx.settings.churn_clients} clients for {ctx.settings.duration:g} s")
    return await churn_run(ctx, server, ctx.settings.churn_clients, ctx.settings.duration)
