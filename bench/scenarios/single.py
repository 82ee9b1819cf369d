"""Scenarios 1 and 2: one session moving one big file, repeated; and the raw sendfile limit."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections import Counter

from bench.client import failure_kind
from bench.peers.base import Running, ServeSpec
from bench.rawlimit import measure_once, start_sender
from bench.scenarios.base import (
    MB,
    SINGLE,
    Context,
    Figures,
    TLSTally,
    bounded,
    counts,
    one_session,
)

__all__ = [
    "raw_limit",
    "retr_single",
    "stor_single",
    "summarize_ftps_retr_single",
    "summarize_retr_single",
]


def spread(values: list[float]) -> Figures:
    if not values:
        return {}
    best, median = max(values), statistics.median(values)
    figures: Figures = {"mb_s_best": best / MB, "mb_s_median": median / MB}
    figures["runs_mb_s"] = [round(value / MB, 1) for value in values]
    if len(values) > 1 and best > 1.3 * min(values):
        figures["warning"] = (
            f"runs spread from {min(values) / MB:.0f} to {best / MB:.0f} MB/s: loopback is "
            "bimodal (sender and receiver on one core or on two) or the machine is busy"
        )
    return figures


# --- 1. single-stream RETR ---------------------------------------------------------------------


async def retr_single(ctx: Context, server: Running, spec: ServeSpec) -> Figures:
    size = ctx.settings.single_size
    rates: list[float] = []
    adjacent: list[float] = []
    failures: Counter[str] = Counter()
    tls = TLSTally()
    sender, raw_rates = await _raw_sender(ctx, spec)
    for run in range(ctx.settings.repeat):
        ctx.reporter.detail(f"run {run + 1}/{ctx.settings.repeat}")
        if sender is not None:
            # Loopback speed drifts with the machine's load: a raw measurement
            # right next to each FTP run keeps the limit honest.
            rate = await measure_once(sender, size, ctx.settings.timeout)
            adjacent.append(rate)
            raw_rates.append(rate)
        session = await one_session(ctx, server, failures)
        if session is None:
            continue
        try:
            started = time.perf_counter()
            received = await bounded(session.retr(SINGLE), ctx.settings.timeout)
            elapsed = time.perf_counter() - started
            if received == size:
                rates.append(size / elapsed)
            else:
                failures["short transfer"] += 1
        except Exception as exc:  # counted, and the next run goes on
            failures[failure_kind(exc)] += 1
        finally:
            tls.add(session)
            await session.quit()
    figures = spread(rates) | {"bytes": size, "runs": len(rates), "failures": counts(failures)}
    figures["raw_adjacent_mb_s"] = [round(rate / MB, 1) for rate in adjacent]
    return figures | tls.figures()


async def _raw_sender(ctx: Context, spec: ServeSpec) -> tuple[Running | None, list[float]]:
    """The raw sender this RETR run compares with: plain sendfile, or TLS for FTPS."""
    if spec.tls is None:
        return ctx.raw_sender, ctx.raw_rates
    if ctx.raw_tls_sender is None:  # started by the first FTPS run; the runner stops it
        source = ctx.dataset.real(SINGLE)
        ctx.raw_tls_sender = await start_sender(source, ctx.dataset.work, spec.tls)
    return ctx.raw_tls_sender, ctx.raw_tls_rates


def raw_limit(rates: list[float], size: int) -> Figures:
    """The raw sendfile limit from every raw measurement of the run."""
    return {
        "bytes": size,
        "runs": len(rates),
        "bytes_s_best": max(rates),
        "bytes_s_median": statistics.median(rates),
        "mb_s_best": max(rates) / MB,
        "mb_s_median": statistics.median(rates) / MB,
        "runs_mb_s": [round(rate / MB, 1) for rate in rates],
    }


def summarize_retr_single(ctx: Context, results: dict[str, Figures]) -> Figures:
    """Percentages of the raw limit, once every raw measurement of the scenario is in."""
    return _percent_of_raw(results, ctx.raw_rates, ctx.settings.single_size, "raw_limit")


def summarize_ftps_retr_single(ctx: Context, results: dict[str, Figures]) -> Figures:
    """Percentages of the raw TLS limit (OpenSSL alone, no FTP) of scenario 10."""
    return _percent_of_raw(results, ctx.raw_tls_rates, ctx.settings.single_size, "raw_tls_limit")


def _percent_of_raw(
    results: dict[str, Figures], rates: list[float], size: int, name: str
) -> Figures:
    """Each server's best and median as a percentage of the raw ``rates``, which go in ``name``."""
    if not rates:
        return {}
    raw = raw_limit(rates, size)
    for figures in results.values():
        if "mb_s_best" in figures:
            figures["pct_of_raw_best"] = 100 * figures["mb_s_best"] / raw["mb_s_best"]
            figures["pct_of_raw_median"] = 100 * figures["mb_s_median"] / raw["mb_s_median"]
    return {name: raw}


# --- 2. single-stream STOR ---------------------------------------------------------------------


async def stor_single(ctx: Context, server: Running, spec: ServeSpec) -> Figures:
    size = ctx.settings.single_size
    source = str(ctx.dataset.real(SINGLE))
    rates: list[float] = []
    failures: Counter[str] = Counter()
    tls = TLSTally()
    ctx.dataset.warm(size)  # each later run reuses the pages the one before freed
    for run in range(ctx.settings.repeat):
        ctx.reporter.detail(f"run {run + 1}/{ctx.settings.repeat}")
        session = await one_session(ctx, server, failures)
        if session is None:
            continue
        name = f"/upload/single-{run}.bin"
        fd = os.open(source, os.O_RDONLY)
        try:
            started = time.perf_counter()
            await bounded(session.stor(name, fd, size), ctx.settings.timeout)
            elapsed = time.perf_counter() - started
            if ctx.dataset.real(name).stat().st_size == size:
                rates.append(size / elapsed)
            else:
                failures["short upload"] += 1
        except Exception as exc:  # counted, and the next run goes on
            failures[failure_kind(exc)] += 1
        finally:
            _close(fd)
            tls.add(session)
            await session.quit()
            ctx.dataset.clear_uploads()
    figures = spread(rates) | {"bytes": size, "runs": len(rates), "failures": counts(failures)}
    return figures | tls.figures()


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
