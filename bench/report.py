"""Terminal output (progress bar while running, the results table at the end) and the JSON file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bench.scenarios import Reporter, failed_sessions
from bench.targets import evaluate

__all__ = ["Progress", "render_markdown", "render_table", "size_text", "write_json"]

_BAR = 24
_TICK = 0.5
_MAX_TICKS = 1_000_000  # about six days of ticking: the run ends long before


def size_text(size: int) -> str:
    """``1073741824`` -> ``1 GiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % (scale // 16) == 0:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


class Progress(Reporter):
    """A progress bar on stderr: one step per server run, a live detail and elapsed time.

    On a terminal the bar redraws in place twice a second; otherwise (CI logs)
    each step prints one line.
    """

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = max(1, total)
        self.done = 0
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._label = ""
        self._detail = ""
        self._started = time.monotonic()
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._tty:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        for _ in range(_MAX_TICKS):
            self._render()
            await asyncio.sleep(_TICK)

    def _render(self) -> None:
        if not self._tty:
            return
        filled = _BAR * self.done // self.total
        bar = "#" * filled + "." * (_BAR - filled)
        elapsed = time.monotonic() - self._started
        detail = f" · {self._detail}" if self._detail else ""
        line = f"[{bar}] {self.done}/{self.total} {self._label}{detail}  {elapsed:.0f} s"
        self._stream.write("\r" + line[:160] + "\x1b[K")
        self._stream.flush()

    def _print(self, text: str) -> None:
        if self._tty:
            self._stream.write("\r\x1b[K")
        self._stream.write(text + "\n")
        self._stream.flush()
        self._render()

    def step(self, label: str) -> None:
        self._label, self._detail = label, ""
        if not self._tty:
            self._print(f"[{self.done + 1}/{self.total}] {label}")
        self._render()

    def detail(self, text: str) -> None:
        self._detail = text
        self._render()

    def finish(self, summary: str) -> None:
        self.done += 1
        self._print(f"  {self._label}: {summary}")

    def note(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._tty:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


@dataclass(frozen=True)
class _Row:
    scenario: str
    figure: str
    title: str
    fmt: Callable[[float], str]
    failures: str | None = None  # the failures figure this row answers to (None: all)


def _rows(options: dict[str, Any]) -> list[_Row]:
    single = size_text(options["single_size"])
    many = size_text(options["many_size"])
    clients, idle = options["clients"], options["idle_sessions"]
    whole = "{:.0f}".format
    return [
        _Row("retr_single", "mb_s_best", f"1 RETR {single}, MB/s best", whole),
        _Row("retr_single", "mb_s_median", "1 RETR, MB/s median", whole),
        _Row("retr_single", "pct_of_raw_best", "1 RETR, % of raw (best)", "{:.0f}%".format),
        _Row("stor_single", "mb_s_median", f"2 STOR {single}, MB/s median", whole),
        _Row("stor_single", "mb_s_best", "2 STOR, MB/s best", whole),
        _Row(
            "login",
            "concurrent_s",
            f"3 {clients} logins at once, s",
            "{:.3f}".format,
            "concurrent_failures",
        ),
        _Row(
            "login",
            "sequential_s",
            f"3 {clients} logins in a row, s",
            "{:.3f}".format,
            "sequential_failures",
        ),
        _Row("retr_many", "seconds", f"4 {clients} x RETR {many}, s", "{:.2f}".format),
        _Row("stor_many", "seconds", f"5 {clients} x STOR {many}, s", "{:.2f}".format),
        _Row(
            "idle_memory", "rss_per_session_kib", f"6 {idle} idle, KiB/session RSS", "{:.1f}".format
        ),
        _Row("idle_memory", "uss_per_session_kib", "6 idle, KiB/session private", "{:.1f}".format),
        _Row("idle_memory", "pss_per_session_kib", "6 idle, KiB/session PSS", "{:.1f}".format),
        _Row("churn", "sessions_per_s", "7 churn, sessions/s", whole),
        _Row("throttle", "pct_of_limit", "8 throttle, % of limit", "{:.1f}%".format),
        _Row("throttle", "steady_pct_of_limit", "8 throttle, steady % of limit", "{:.1f}%".format),
        _Row("throttle", "redis_commands_per_mib", "8 Redis commands/MiB", "{:.1f}".format),
        *_ftps_rows(single, clients, idle),
    ]


def _ftps_rows(single: str, clients: int, idle: int) -> list[_Row]:
    """Scenarios 10-14 (FTPS), in the same units as their plain twins."""
    whole, seconds, kib = "{:.0f}".format, "{:.3f}".format, "{:.1f}".format
    return [
        _Row("ftps_retr_single", "mb_s_best", f"10 FTPS RETR {single}, MB/s best", whole),
        _Row("ftps_retr_single", "mb_s_median", "10 FTPS RETR, MB/s median", whole),
        _Row("ftps_retr_single", "pct_of_raw_best", "10 FTPS RETR, % of raw TLS", "{:.0f}%".format),
        _Row("ftps_stor_single", "mb_s_median", f"11 FTPS STOR {single}, MB/s median", whole),
        _Row("ftps_stor_single", "mb_s_best", "11 FTPS STOR, MB/s best", whole),
        _Row(
            "ftps_login",
            "concurrent_s",
            f"12 {clients} TLS logins at once, s",
            seconds,
            "concurrent_failures",
        ),
        _Row(
            "ftps_login",
            "sequential_s",
            f"12 {clients} TLS logins in a row, s",
            seconds,
            "sequential_failures",
        ),
        _Row("ftps_idle_memory", "rss_per_session_kib", f"13 {idle} idle TLS, KiB RSS", kib),
        _Row("ftps_idle_memory", "uss_per_session_kib", "13 idle TLS, KiB private", kib),
        _Row("ftps_idle_memory", "pss_per_session_kib", "13 idle TLS, KiB PSS", kib),
        _Row("ftps_churn", "sessions_per_s", "14 TLS churn, sessions/s", whole),
    ]


def _matrix(results: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, rows (title + one cell per server) and notes of the main table."""
    scenarios: dict[str, Any] = results["scenarios"]
    raw = results.get("raw_limit") or {}
    raw_tls = results.get("raw_tls_limit") or {}
    columns = (["raw-sendfile"] if raw or raw_tls else []) + list(results["peers"])
    notes: list[str] = []
    table: list[list[str]] = []
    for row in _rows(results["options"]):
        if row.scenario not in scenarios:
            continue
        runs: dict[str, Any] = scenarios[row.scenario]["results"]
        cells = [row.title]
        for column in columns:
            if column == "raw-sendfile":  # and the raw TLS limit in the FTPS RETR rows
                limit = {"retr_single": raw, "ftps_retr_single": raw_tls}.get(row.scenario, {})
                value = limit.get(row.figure) if "pct" not in row.figure else None
                cells.append(row.fmt(value) if isinstance(value, int | float) else "")
                continue
            cells.append(_cell(row, column, runs.get(column), notes))
        table.append(cells)
    # A peer that only took part in scenario 9 (ftp-cluster-1 by default) has no column.
    keep = [0] + [i + 1 for i in range(len(columns)) if any(row[i + 1] for row in table)]
    header = [(["", *columns])[i] for i in keep]
    return header, [[row[i] for i in keep] for row in table], notes


def _redis_cost_lines(results: dict[str, Any]) -> list[str]:
    scenario = results["scenarios"].get("redis_cost")
    if scenario is None:
        return []
    lines = []
    for label, figures in scenario["results"].items():
        rate = figures.get("sessions_per_s")
        text = f"{rate:.0f} sessions/s" if rate is not None else _status(figures)
        per = figures.get("redis_commands_per_session")
        extra = f", {per:.1f} Redis commands/session alone" if per is not None else ""
        scripts = figures.get("redis_scripts_per_session_loaded")
        if scripts is not None:
            cpu = figures.get("redis_cpu_us_per_session", 0.0)
            extra += f", {scripts:.2f} script calls and {cpu:.0f} µs of Redis CPU/session loaded"
        lines.append(f"9 churn, {label}: {text}{extra}")
    summary = scenario.get("summary") or {}
    if summary:
        lines.append(
            f"9 Redis backend / in-process: {summary['redis_vs_in_process']:.2f} "
            f"(costs {summary['redis_cost_pct']:.0f}%)"
        )
    if "defender_vs_redis" in summary:
        lines.append(
            f"9 defender on / off (Redis): {summary['defender_vs_redis']:.2f} "
            f"(costs {summary['defender_cost_pct']:.0f}%)"
        )
    return lines


def _accounts_lines(results: dict[str, Any]) -> list[str]:
    """Scenario 16: its runs are labelled by cache setting, not by server, so no table column."""
    scenario = results["scenarios"].get("accounts_db")
    if scenario is None:
        return []
    lines = []
    for label, f in scenario["results"].items():
        if "db_s" not in f:
            lines.append(f"16 database logins, {label}: {_status(f)}")
            continue
        failed = f" (failures: {f['failures']})" if f.get("failures") else ""
        text = f"16 {f['logins']} logins in a row, {label}: file {f['file_s']:.3f} s, "
        if f.get("cached"):
            text += f"database cold {f['db_cold_s']:.3f} s, warm {f['db_s']:.3f} s "
            text += f"({f['db_vs_file']:.2f}x file)"
        else:
            text += f"database {f['db_s']:.3f} s: {f['db_logins_per_s']:.0f} logins/s through "
            text += f"the driver ({f['file_logins_per_s']:.0f}/s from the file)"
        lines.append(f"{text}, median of {f['rounds']} round(s){failed}")
        for driver, rate in (f.get("drivers") or {}).items():
            shown = "not installed"
            if rate is not None:
                shown = f"{rate['lookups_per_s']:.0f} lookups/s"
                shown += f", {rate['cpu_us_per_lookup']:.0f} µs CPU each"
            lines.append(f"16 user lookup without FTP, {driver}: {shown}")
    return lines


def render_table(results: dict[str, Any]) -> str:
    """The results as text: one column per server, one row per headline figure, then notes."""
    header, rows, notes = _matrix(results)
    lines = _grid(header, rows) if rows else []  # scenarios 9 and 16 alone: no table
    extra = _redis_cost_lines(results) + _accounts_lines(results)
    if extra:
        lines += ["", *extra]
    lines += _peer_notes(results)
    lines += list(dict.fromkeys(notes))
    lines += [f"warning: {warning}" for warning in results.get("warnings", [])]
    return "\n".join(lines)


def render_markdown(results: dict[str, Any]) -> str:
    """The results of record for bench/README.md: date, machine, table, targets."""
    machine = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    header, rows, notes = _matrix(results)
    lines = [
        f"Run of {results['started']} (`make bench`, {results['options']['repeat']} runs per "
        f"single-stream scenario, {results['options']['client_procs']} client process).",
        "",
        f"Machine: {machine['cpu_model']}, {machine['logical_cores']} cores, "
        f"{machine['memory_gib']} GiB, {machine['kernel']}, {machine['os']}, "
        f"Python {machine['python']}; test files on "
        f"{'tmpfs' if results['data']['tmpfs'] else 'disk'}.",
        "",
        f"Versions: {versions}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        *(f"- {line}" for line in _redis_cost_lines(results) + _accounts_lines(results)),
        *(f"- {note}" for note in dict.fromkeys(notes)),
        *(f"- warning: {warning}" for warning in results.get("warnings", [])),
        "",
        "Targets (issues 4, 14 and 15):",
        "",
    ]
    for check in results.get("targets", []):
        mark = {True: "met", False: "**not met**", None: "n/a"}[check["met"]]
        lines.append(f"- {check['server']}: {check['target']}: {check['shown']} ({mark})")
    return "\n".join(lines)


def _status(figures: dict[str, Any]) -> str:
    if "skipped" in figures:
        return f"skipped ({figures['skipped']})"
    return f"error ({figures.get('error')})"


def _cell(row: _Row, column: str, figures: dict[str, Any] | None, notes: list[str]) -> str:
    if figures is None:
        return ""
    if "skipped" in figures:
        notes.append(f"skip: {column} / {row.scenario}: {figures['skipped']}")
        return "skip"
    if "error" in figures:
        notes.append(f"error: {column} / {row.scenario}: {figures['error']}")
        return "ERROR"
    value = figures.get(row.figure)
    if not isinstance(value, int | float):
        return "-"
    if row.failures is not None:
        failed = dict(figures.get(row.failures) or {})
    else:
        failed = failed_sessions(figures)
    if failed:
        what = row.failures or row.scenario
        notes.append(f"failures: {column} / {what}: {failed}")
    return row.fmt(value) + ("!" if failed else "")


def _peer_notes(results: dict[str, Any]) -> list[str]:
    lines = [""]
    for label, peer in results["peers"].items():
        if peer.get("skipped"):
            lines.append(f"{label}: skipped: {peer['skipped']}")
        for note in peer.get("notes", []):
            lines.append(f"{label}: {note}")
        if "password_hash" in peer:
            lines.append(f"{label}: login hash {peer['password_hash']}")
    lines.append("'!' marks figures with failed sessions (see failures below)")
    return lines


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(cells[i]) for cells in [header, *rows]) for i in range(len(header))]
    out = []
    for index, cells in enumerate([header, *rows]):
        first = cells[0].ljust(widths[0])
        rest = "  ".join(
            cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)
        )
        out.append(f"{first}  {rest}")
        if index == 0:
            out.append("-" * len(out[0]))
    return out


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")


if __name__ == "__main__":
    # python -m bench.report RESULTS.json: the markdown for "Results of record"
    # (targets re-evaluated, so a saved run is judged by the current goals).
    saved = json.loads(Path(sys.argv[1]).read_text())
    saved["targets"] = evaluate(saved)
    print(render_markdown(saved))
