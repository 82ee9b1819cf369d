"""The speed goals of issues 4, 14 (FTPS) and 15 (database logins), checked against one run.

These are goals, not assertions: each is reported as met, not met, or not
measured (a figure it needs is missing, e.g. a peer was skipped).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["evaluate", "render_targets"]

_PEERS = ("pyftpdlib", "aioftp", "vsftpd")
_FTPS = ("ftps_retr_single", "ftps_stor_single", "ftps_login", "ftps_idle_memory", "ftps_churn")


@dataclass(frozen=True)
class _Figures:
    results: dict[str, Any]

    def get(self, scenario: str, label: str, figure: str) -> float | None:
        runs = self.results["scenarios"].get(scenario, {}).get("results", {})
        value = runs.get(label, {}).get(figure)
        return float(value) if isinstance(value, int | float) else None

    def best_peer(self, scenario: str, figure: str) -> tuple[str, float] | None:
        """The fastest non-ftp-cluster peer that completed every transfer (lowest time)."""
        runs = self.results["scenarios"].get(scenario, {}).get("results", {})
        times = [
            (label, float(f[figure]))
            for label, f in runs.items()
            if label in _PEERS and f.get("complete") and isinstance(f.get(figure), int | float)
        ]
        return min(times, key=lambda item: item[1]) if times else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _check(
    server: str, target: str, value: float | None, met: Callable[[float], bool], fmt: str
) -> dict[str, Any]:
    return {
        "server": server,
        "target": target,
        "value": None if value is None else round(value, 4),
        "shown": "not measured" if value is None else fmt.format(value),
        "met": None if value is None else bool(met(value)),
    }


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per (ftp-cluster variant, target)."""
    f = _Figures(results)
    checks: list[dict[str, Any]] = []
    measured = {
        label
        for key, scenario in results["scenarios"].items()
        if key != "redis_cost"
        for label in scenario["results"]
    }
    clusters = [
        label for label in results["peers"] if label.startswith("ftp-cluster") and label in measured
    ]
    for c in clusters:
        retr = f.get("retr_single", c, "mb_s_best")
        stor = f.get("stor_single", c, "mb_s_median")
        checks += [
            _check(
                c,
                "RETR >= 90% of raw sendfile",
                f.get("retr_single", c, "pct_of_raw_best"),
                lambda v: v >= 90,
                "{:.0f}%",
            ),
            _check(
                c,
                "RETR >= 0.95x vsftpd",
                _ratio(retr, f.get("retr_single", "vsftpd", "mb_s_best")),
                lambda v: v >= 0.95,
                "{:.2f}x",
            ),
            _check(
                c,
                "RETR >= 1.2x pyftpdlib",
                _ratio(retr, f.get("retr_single", "pyftpdlib", "mb_s_best")),
                lambda v: v >= 1.2,
                "{:.2f}x",
            ),
            _check(
                c,
                "STOR >= 1.0x vsftpd (median)",
                _ratio(stor, f.get("stor_single", "vsftpd", "mb_s_median")),
                lambda v: v >= 1.0,
                "{:.2f}x",
            ),
            _check(
                c,
                "login at once <= 1.0x pyftpdlib",
                _ratio(
                    f.get("login", c, "concurrent_s"), f.get("login", "pyftpdlib", "concurrent_s")
                ),
                lambda v: v <= 1.0,
                "{:.2f}x",
            ),
            _check(
                c,
                "login in a row <= 1.0x pyftpdlib",
                _ratio(
                    f.get("login", c, "sequential_s"), f.get("login", "pyftpdlib", "sequential_s")
                ),
                lambda v: v <= 1.0,
                "{:.2f}x",
            ),
        ]
        for scenario, name in (("retr_many", "N x RETR"), ("stor_many", "N x STOR")):
            best = f.best_peer(scenario, "seconds")
            value = _ratio(f.get(scenario, c, "seconds"), best[1] if best else None)
            who = best[0] if best else "best peer"
            checks.append(_check(c, f"{name} <= 1.0x {who}", value, lambda v: v <= 1.0, "{:.2f}x"))
        checks.append(
            _check(
                c,
                "idle session <= 8 KiB",
                f.get("idle_memory", c, "rss_per_session_kib"),
                lambda v: v <= 8,
                "{:.1f} KiB",
            )
        )
        checks += _ftps_checks(f, c)
        pct = f.get("throttle", c, "pct_of_limit")
        throttled = results["scenarios"].get("throttle", {}).get("results", {})
        if c in throttled:  # scenario 8 runs the widest ftp-cluster only
            checks += [
                _check(
                    c, "throttle within +-5% of limit", pct, lambda v: abs(v - 100) <= 5, "{:.1f}%"
                ),
                _check(
                    c,
                    "<= 16 Redis commands per MiB",
                    f.get("throttle", c, "redis_commands_per_mib"),
                    lambda v: v <= 16,
                    "{:.1f}",
                ),
            ]
    checks += _accounts_checks(results)
    cost = results["scenarios"].get("redis_cost")
    if cost is not None:
        redis_label = next(
            (lbl for lbl, x in cost["results"].items() if x.get("backend") == "redis"), ""
        )
        rate = f.get("redis_cost", redis_label, "sessions_per_s")
        summary = cost.get("summary") or {}
        checks += [
            _check(
                redis_label or "ftp-cluster redis",
                "churn (Redis) >= 1.0x pyftpdlib",
                _ratio(rate, f.get("churn", "pyftpdlib", "sessions_per_s")),
                lambda v: v >= 1.0,
                "{:.2f}x",
            ),
            _check(
                redis_label or "ftp-cluster redis",
                "Redis backend costs <= 20% of churn",
                summary.get("redis_cost_pct"),
                lambda v: v <= 20,
                "{:.0f}%",
            ),
            _check(
                f"{redis_label or 'ftp-cluster redis'}+defender",
                "defender costs <= 10% of churn",
                summary.get("defender_cost_pct"),
                lambda v: v <= 10,
                "{:.0f}%",
            ),
        ]
    return checks


def _accounts_checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 15's goal for scenario 16 (database users), from its summary."""
    scenario = results["scenarios"].get("accounts_db")
    if scenario is None:
        return []
    label = next((lbl for lbl in scenario["results"] if lbl.endswith(" cached")), "ftp-cluster-1")
    ratio = (scenario.get("summary") or {}).get("warm_vs_file")
    return [
        _check(label, "warm DB logins <= 1.10x file logins", ratio, lambda v: v <= 1.10, "{:.2f}x")
    ]


def _ftps_checks(f: _Figures, c: str) -> list[dict[str, Any]]:
    """Issue 14's goals for scenarios 10-14 (FTPS), for ftp-cluster variant ``c``."""
    if not any(f.results["scenarios"].get(key) for key in _FTPS):
        return []
    checks = []
    for key, name, figure in (
        ("ftps_retr_single", "FTPS RETR", "mb_s_best"),
        ("ftps_stor_single", "FTPS STOR (median)", "mb_s_median"),
    ):
        mine = f.get(key, c, figure)
        for peer, goal in (("vsftpd", 1.0), ("pyftpdlib", 1.5)):
            value = _ratio(mine, f.get(key, peer, figure))
            met: Callable[[float], bool] = functools.partial(operator.le, goal)
            checks.append(_check(c, f"{name} >= {goal:.1f}x {peer}", value, met, "{:.2f}x"))
    for figure, name in (("concurrent_s", "at once"), ("sequential_s", "in a row")):
        value = _ratio(f.get("ftps_login", c, figure), f.get("ftps_login", "pyftpdlib", figure))
        checks.append(
            _check(c, f"TLS login {name} <= 1.0x pyftpdlib", value, lambda v: v <= 1.0, "{:.2f}x")
        )
    churn = _ratio(
        f.get("ftps_churn", c, "sessions_per_s"), f.get("ftps_churn", "pyftpdlib", "sessions_per_s")
    )
    checks += [
        _check(c, "TLS churn >= 1.0x pyftpdlib", churn, lambda v: v >= 1.0, "{:.2f}x"),
        _check(
            c,
            "idle TLS session <= 48 KiB",
            f.get("ftps_idle_memory", c, "rss_per_session_kib"),
            lambda v: v <= 48,
            "{:.1f} KiB",
        ),
    ]
    return checks


def render_targets(checks: list[dict[str, Any]]) -> str:
    lines = ["", "Targets (issues 4, 14 and 15), ratios within this run:"]
    for check in checks:
        mark = {True: "met", False: "NOT met", None: "n/a"}[check["met"]]
        lines.append(f"  {mark:8} {check['server']:26} {check['target']}: {check['shown']}")
    return "\n".join(lines)
