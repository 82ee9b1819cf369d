"""Scenarios 10 to 14: FTPS (explicit, AUTH TLS, PROT P) against the peers that serve it.

They are scenarios 1, 2, 3, 6 and 7 run again with TLS: every server gets
the run's certificate (:func:`make_certificate`) and requires TLS for logins
and data (ftp-cluster ``required = "all"``, pyftpdlib's ``TLS_FTPHandler``
with ``tls_control_required`` and ``tls_data_required``, vsftpd with
``ssl_enable`` and ``require_ssl_reuse``), and the client speaks TLS and
offers the control connection's session on every data connection
(:mod:`bench.ftps`). aioftp is skipped: it has implicit TLS only.
"""

from __future__ import annotations

from pathlib import Path

from bench.peers.base import Peer, TLSFiles
from bench.scenarios.base import Context, RunPlan, Scenario
from bench.scenarios.crowd import churn, idle_memory, login, merge_login_rounds
from bench.scenarios.single import retr_single, stor_single, summarize_ftps_retr_single

__all__ = ["FTPS_SCENARIOS", "make_certificate", "plan_ftps"]

FTPS_KEYS = ("ftps_retr_single", "ftps_stor_single", "ftps_login", "ftps_idle_memory", "ftps_churn")


def make_certificate(directory: Path) -> TLSFiles:
    """The run's self-signed certificate for 127.0.0.1, made as ``ftp-cluster
    self-signed-certificate`` makes it (EC P-256): every server presents this one."""
    from ftp_cluster.supervisor.certificates import write_self_signed  # noqa: PLC0415

    certificate, key = write_self_signed(directory / "tls", ["127.0.0.1", "localhost"])
    return TLSFiles(certificate, key)


def plan_ftps(ctx: Context, peers: list[Peer]) -> list[RunPlan]:
    """Every server, serving FTPS with the run's certificate (or why it cannot)."""
    spec = ctx.spec(tls=ctx.tls)
    missing = "no certificate was made for this run" if ctx.tls is None else None
    return [RunPlan(peer.name, peer, spec, missing or peer.cannot_serve(spec)) for peer in peers]


FTPS_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        10, FTPS_KEYS[0], "FTPS single-stream RETR", "mb_s_best", "MB/s", False, retr_single,
        plan_ftps, summarize_ftps_retr_single,
    ),
    Scenario(
        11, FTPS_KEYS[1], "FTPS single-stream STOR", "mb_s_median", "MB/s", False, stor_single,
        plan_ftps,
    ),
    Scenario(
        12, FTPS_KEYS[2], "FTPS: N clients connect + AUTH TLS + log in", "concurrent_s", "s",
        True, login, plan_ftps, merge=merge_login_rounds,
    ),
    Scenario(
        13, FTPS_KEYS[3], "Memory per idle TLS session", "rss_per_session_kib", "KiB", True,
        idle_memory, plan_ftps,
    ),
    Scenario(
        14, FTPS_KEYS[4], "FTPS connection churn", "sessions_per_s", "sessions/s", False, churn,
        plan_ftps,
    ),
)  # fmt: skip
