"""The one stats model: what the heartbeat, ``status`` and the log formats make of it."""

from __future__ import annotations

import io
import json
import logging
import select

from ftp_cluster.shared import logformat
from ftp_cluster.supervisor.cli import _format_status
from ftp_cluster.worker.stats import FIGURES, TRANSFER_BUCKETS, WorkerStats

ISSUE_FAMILIES = {
    "sessions",
    "connections",
    "logins",
    "transfers",
    "transfer_bytes",
    "tls_handshakes",
    "redis_commands",
}


def test_every_figure_feeds_one_of_the_issues_families() -> None:
    assert {figure.metric for figure in FIGURES} == ISSUE_FAMILIES
    logins = {dict(f.labels)["result"] for f in FIGURES if f.metric == "logins"}
    assert logins == {"ok", "bad_password", "unknown_user", "limit", "banned", "tls_required"}


def test_a_heartbeat_of_huge_figures_stays_one_atomic_pipe_write() -> None:
    stats = WorkerStats()
    for figure in FIGURES:
        setattr(stats, figure.name, 2**62)
    for _ in range(3):
        stats.transfer_finished("upload", "ok", 1e9)
        stats.transfer_finished("download", "aborted", 0.001)
    line = json.dumps({"event": "heartbeat", "pid": 4194304, **stats.figures(), "time": 1e10})
    assert len(line) + 1 < select.PIPE_BUF
    assert stats.figures()["upload_seconds"] == [[0] * len(TRANSFER_BUCKETS) + [3], 3e9]
    assert stats.downloads_aborted == 2**62 + 3


def test_status_shows_every_figure_with_a_column() -> None:
    worker = {"slot": 0, "pid": 42, "state": "accepting", "uptime": 5.0}
    worker |= {figure.name: 7 for figure in FIGURES}
    worker["bytes_uploaded"] = 3 * 1024 * 1024
    table = _format_status({"pid": 1, "address": "ftp://x:1", "workers": [worker], "redis": {}})
    heading, row = table.splitlines()[-2:]
    for figure in FIGURES:
        if figure.column is not None:
            assert figure.column in heading.split()
    assert "3.0 MiB" in row


def logger_to(out: io.StringIO, formatter: logging.Formatter) -> logging.Logger:
    """A logger of its own (the root's handlers are pytest's) writing to ``out``."""
    logger = logging.getLogger(f"ftp_cluster.test_stats.{type(formatter).__name__}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger.handlers[:] = [handler]
    return logger


def test_json_lines_carry_the_worker_and_the_events_fields() -> None:
    out = io.StringIO()
    logger = logger_to(out, logformat.JsonFormatter())
    try:
        logformat.set_worker(3)
        logger.info(
            "login %s", "ok", extra=logformat.event_fields("login", session="9.1", user="a")
        )
        logformat.set_worker(None)
        logger.warning("plain")
    finally:
        logformat.set_worker(None)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["worker"] == 3 and first["event"] == "login" and first["message"] == "login ok"
    assert (first["session"], first["user"], first["level"]) == ("9.1", "a", "INFO")
    assert first["ts"].endswith("Z")
    assert "worker" not in second and second["event"] == "log"


def test_text_lines_show_the_fields_as_key_value() -> None:
    out = io.StringIO()
    logger = logger_to(out, logformat.TextFormatter())
    try:
        logformat.set_worker(1)
        logger.info("quit", extra=logformat.event_fields("quit", session="9.2", user="a b"))
    finally:
        logformat.set_worker(None)
    line = out.getvalue().strip()
    assert line.endswith('ftp_cluster.test_stats.TextFormatter: quit session=9.2 user="a b"')
