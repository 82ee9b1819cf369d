"""The scenarios of issue 4 (1-9), the FTPS ones of issue 14 (10-14), issue 17's 15, issue 15's 16.

Every scenario drives a server through the same client (:mod:`bench.client`,
:mod:`bench.load`) with the same account, files and settings; see
bench/README.md for what each measures.
"""

from __future__ import annotations

from bench.scenarios.accounts import accounts_db, plan_accounts_db, summarize_db
from bench.scenarios.base import (
    MB,
    Context,
    Figures,
    Merger,
    Reporter,
    RunPlan,
    Scenario,
    Settings,
    failed_sessions,
)
from bench.scenarios.cluster import (
    plan_redis_cost,
    plan_throttle,
    redis_cost,
    summarize_redis_cost,
    throttle,
)
from bench.scenarios.crowd import (
    churn,
    idle_memory,
    login,
    merge_login_rounds,
    merge_transfer_rounds,
    retr_many,
    stor_many,
)
from bench.scenarios.ftps import FTPS_KEYS, FTPS_SCENARIOS, make_certificate
from bench.scenarios.scale import crowd10k, plan_crowd10k, summarize_crowd10k
from bench.scenarios.single import raw_limit, retr_single, stor_single, summarize_retr_single

__all__ = [
    "FTPS_KEYS",
    "MB",
    "SCENARIOS",
    "Context",
    "Figures",
    "Merger",
    "Reporter",
    "RunPlan",
    "Scenario",
    "Settings",
    "failed_sessions",
    "make_certificate",
    "raw_limit",
    "select",
]

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        1,
        "retr_single",
        "Single-stream RETR",
        "mb_s_best",
        "MB/s",
        False,
        retr_single,
        summarize=summarize_retr_single,
    ),
    Scenario(2, "stor_single", "Single-stream STOR", "mb_s_median", "MB/s", False, stor_single),
    Scenario(
        3,
        "login",
        "N clients connect + log in",
        "concurrent_s",
        "s",
        True,
        login,
        merge=merge_login_rounds,
    ),
    Scenario(
        4,
        "retr_many",
        "N concurrent RETRs",
        "seconds",
        "s",
        True,
        retr_many,
        merge=merge_transfer_rounds,
    ),
    Scenario(
        5,
        "stor_many",
        "N concurrent STORs",
        "seconds",
        "s",
        True,
        stor_many,
        merge=merge_transfer_rounds,
    ),
    Scenario(
        6, "idle_memory", "Memory per idle session", "rss_per_session_kib", "KiB", True, idle_memory
    ),
    Scenario(7, "churn", "Connection churn", "sessions_per_s", "sessions/s", False, churn),
    Scenario(
        8,
        "throttle",
        "Throttle accuracy",
        "pct_of_limit",
        "% of limit",
        False,
        throttle,
        plan_throttle,
    ),
    Scenario(
        9,
        "redis_cost",
        "Redis cost (churn)",
        "sessions_per_s",
        "sessions/s",
        False,
        redis_cost,
        plan_redis_cost,
        summarize_redis_cost,
    ),
    *FTPS_SCENARIOS,
    Scenario(
        15,
        "crowd10k",
        "10,000 sessions, 1,000 RETRs",
        "seconds",
        "s",
        True,
        crowd10k,
        plan_crowd10k,
        summarize_crowd10k,
        merge=merge_transfer_rounds,
    ),
    Scenario(
        16,
        "accounts_db",
        "Logins: database users vs file users",
        "db_logins_per_s",
        "logins/s",
        False,
        accounts_db,
        plan_accounts_db,
        summarize_db,
    ),
)


def select(names: list[str]) -> list[Scenario]:
    """Scenarios by number or key (``["1", "churn"]``); all of them for an empty list."""
    if not names:
        return list(SCENARIOS)
    chosen: list[Scenario] = []
    for name in names:
        match = [s for s in SCENARIOS if name in (str(s.number), s.key)]
        if not match:
            keys = ", ".join(f"{s.number}={s.key}" for s in SCENARIOS)
            raise ValueError(f"unknown scenario {name!r} (choose from {keys})")
        chosen.extend(m for m in match if m not in chosen)
    return sorted(chosen, key=lambda s: s.number)
