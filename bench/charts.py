"""PNG charts of one run (matplotlib, Agg backend: no display needed).

throughput.png   single-stream RETR/STOR by server, against the raw sendfile limit
concurrency.png  time for N concurrent clients (login, RETR, STOR) by server
memory.png       memory per idle logged-in session by server
throttle.png     rate over time of the throttled transfers, against the limit
churn.png        sessions per second (scenarios 7 and 9)
ftps.png         FTPS (10-14): throughput, TLS logins, TLS churn, memory per idle TLS session
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

__all__ = ["draw_all"]

_MIB = 1 << 20


def _figures(results: dict[str, Any], scenario: str) -> dict[str, dict[str, Any]]:
    runs = results["scenarios"].get(scenario, {}).get("results", {})
    return {label: f for label, f in runs.items() if "skipped" not in f and "error" not in f}


def _label(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _grouped_bars(
    path: Path,
    *,
    title: str,
    ylabel: str,
    labels: list[str],
    series: dict[str, list[float | None]],
    hline: tuple[float, str] | None = None,
    log: bool = False,
) -> Path | None:
    if not _has_values(series):
        return None
    figure, axes = plt.subplots(figsize=(max(6.0, 1.3 * len(labels) + 2), 4.5))
    _bars(axes, title=title, ylabel=ylabel, labels=labels, series=series, hline=hline, log=log)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _has_values(series: dict[str, list[float | None]]) -> bool:
    return any(v is not None for values in series.values() for v in values)


def _bars(
    axes: Any,
    *,
    title: str,
    ylabel: str,
    labels: list[str],
    series: dict[str, list[float | None]],
    hline: tuple[float, str] | None = None,
    log: bool = False,
) -> None:
    """Grouped bars, one group per server, one bar per series, on ``axes``."""
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        xs = [i + index * width - 0.4 + width / 2 for i in range(len(labels))]
        heights = [v if v is not None else 0.0 for v in values]
        bars = axes.bar(xs, heights, width, label=name)
        axes.bar_label(bars, labels=[_label(v) for v in values], fontsize=7)
    if hline is not None:
        axes.axhline(hline[0], color="red", linestyle="--", linewidth=1, label=hline[1])
    axes.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    if log:
        axes.set_yscale("log")
    axes.set_ylabel(ylabel + (" (log scale)" if log else ""))
    axes.set_title(title)
    axes.legend(fontsize=8)


def _ftps(results: dict[str, Any], out: Path) -> Path | None:
    """Scenarios 10-14 side by side: four panels, since their units differ."""
    keys = ("ftps_retr_single", "ftps_stor_single", "ftps_login", "ftps_churn", "ftps_idle_memory")
    retr, stor, login, churn, idle = (_figures(results, key) for key in keys)
    raw = results.get("raw_tls_limit") or {}
    labels = [
        label
        for label in results["peers"]
        if any(label in runs for runs in (retr, stor, login, churn, idle))
    ]

    def of(runs: dict[str, dict[str, Any]], figure: str) -> list[float | None]:
        return [runs.get(label, {}).get(figure) for label in labels]

    panels: list[dict[str, Any]] = [
        {
            "title": "FTPS single stream (higher is better)",
            "ylabel": "MB/s",
            "series": {
                "RETR best": of(retr, "mb_s_best"),
                "RETR median": of(retr, "mb_s_median"),
                "STOR median": of(stor, "mb_s_median"),
            },
            "hline": (raw["mb_s_best"], "raw loopback TLS (best)") if "mb_s_best" in raw else None,
        },
        {
            "title": f"{results['options']['clients']} TLS logins (lower is better)",
            "ylabel": "seconds",
            "series": {"at once": of(login, "concurrent_s"), "in a row": of(login, "sequential_s")},
            "log": True,  # vsftpd's backlog makes its burst 100x the others
        },
        {
            "title": "TLS churn (higher is better)",
            "ylabel": "sessions/s",
            "series": {"sessions/s": of(churn, "sessions_per_s")},
        },
        {
            "title": f"Memory per idle TLS session ({results['options']['idle_sessions']})",
            "ylabel": "KiB per session",
            "series": {
                "RSS": of(idle, "rss_per_session_kib"),
                "private (USS)": of(idle, "uss_per_session_kib"),
                "PSS": of(idle, "pss_per_session_kib"),
            },
            "hline": (48.0, "target: 48 KiB"),
        },
    ]
    if not labels or not any(_has_values(panel["series"]) for panel in panels):
        return None
    width = max(6.0, 1.3 * len(labels) + 2)
    figure, grid = plt.subplots(2, 2, figsize=(2 * width, 9))
    for axes, panel in zip(grid.flat, panels, strict=True):
        _bars(axes, labels=labels, **panel)
    figure.tight_layout()
    path = out / "ftps.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _throughput(results: dict[str, Any], out: Path) -> Path | None:
    retr, stor = _figures(results, "retr_single"), _figures(results, "stor_single")
    labels = [label for label in results["peers"] if label in retr or label in stor]
    raw = results.get("raw_limit") or {}
    line = (raw["mb_s_best"], "raw loopback sendfile (best)") if "mb_s_best" in raw else None
    return _grouped_bars(
        out / "throughput.png",
        title="Single-stream throughput (higher is better)",
        ylabel="MB/s",
        labels=labels,
        series={
            "RETR best": [retr.get(label, {}).get("mb_s_best") for label in labels],
            "RETR median": [retr.get(label, {}).get("mb_s_median") for label in labels],
            "STOR median": [stor.get(label, {}).get("mb_s_median") for label in labels],
        },
        hline=line,
    )


def _concurrency(results: dict[str, Any], out: Path) -> Path | None:
    login, retr, stor = (_figures(results, key) for key in ("login", "retr_many", "stor_many"))
    labels = [
        label for label in results["peers"] if label in login or label in retr or label in stor
    ]
    clients = results["options"]["clients"]
    return _grouped_bars(
        out / "concurrency.png",
        title=f"Time for {clients} concurrent clients (lower is better)",
        ylabel="seconds",
        labels=labels,
        series={
            "login at once": [login.get(label, {}).get("concurrent_s") for label in labels],
            "login in a row": [login.get(label, {}).get("sequential_s") for label in labels],
            "RETR": [retr.get(label, {}).get("seconds") for label in labels],
            "STOR": [stor.get(label, {}).get("seconds") for label in labels],
        },
        log=True,  # vsftpd's overflowing backlog makes some times 100x the others
    )


def _memory(results: dict[str, Any], out: Path) -> Path | None:
    idle = _figures(results, "idle_memory")
    labels = [label for label in results["peers"] if label in idle]
    sessions = results["options"]["idle_sessions"]
    return _grouped_bars(
        out / "memory.png",
        title=f"Server memory per idle logged-in session ({sessions} sessions)",
        ylabel="KiB per session",
        labels=labels,
        series={
            "RSS": [idle[label].get("rss_per_session_kib") for label in labels],
            "private (USS)": [idle[label].get("uss_per_session_kib") for label in labels],
            "proportional (PSS)": [idle[label].get("pss_per_session_kib") for label in labels],
        },
        hline=(8.0, "target: 8 KiB"),
    )


def _churn(results: dict[str, Any], out: Path) -> Path | None:
    churn, cost = _figures(results, "churn"), _figures(results, "redis_cost")
    rates = {label: f.get("sessions_per_s") for label, f in (churn | cost).items()}
    labels = list(rates)
    return _grouped_bars(
        out / "churn.png",
        title="Connection churn: connect, login, PWD, QUIT (higher is better)",
        ylabel="sessions/s",
        labels=labels,
        series={"sessions/s": [rates[label] for label in labels]},
    )


def _throttle(results: dict[str, Any], out: Path) -> Path | None:
    runs = _figures(results, "throttle")
    if not runs:
        return None
    figure, axes = plt.subplots(figsize=(8, 4.5))
    limit = 0.0
    for label, figures in runs.items():
        series = figures.get("rate_series") or []
        limit = float(figures.get("limit_bytes_s") or limit)
        if series:
            axes.plot([t for t, _ in series], [v / _MIB for _, v in series], label=label)
    if limit:
        axes.axhline(limit / _MIB, color="red", linestyle="--", linewidth=1, label="limit")
        axes.axhspan(0.95 * limit / _MIB, 1.05 * limit / _MIB, color="red", alpha=0.1, label="±5%")
    axes.set_xlabel("seconds")
    axes.set_ylabel("MiB/s (all streams together)")
    axes.set_title("Throttled downloads: aggregate rate over time")
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = out / "throttle.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def draw_all(results: dict[str, Any], out: Path) -> list[Path]:
    """Draw every chart the results have data for; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    drawn = [
        chart(results, out)
        for chart in (_throughput, _concurrency, _memory, _throttle, _churn, _ftps)
    ]
    return [path for path in drawn if path is not None]
