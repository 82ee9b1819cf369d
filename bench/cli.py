"""Command-line options of ``python -m bench`` and the top-level flow of a run."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import uvloop

from bench.charts import draw_all
from bench.peers import SERVER_NAMES
from bench.report import render_table, write_json
from bench.runner import Options, run
from bench.scenarios import SCENARIOS, Settings, select
from bench.targets import render_targets

__all__ = ["main", "parse_options", "parse_size"]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_RESULTS = Path(__file__).resolve().parent / "results"

# Full run (issue 4) and --quick (the smoke test: seconds, tiny sizes, two servers).
_FULL: dict[str, Any] = {
    "sizes": "1GiB,10MiB",
    "clients": 300,
    "idle_sessions": 1000,
    "churn_clients": 64,
    "duration": 10.0,
    "repeat": 5,
    "repeat_many": 3,
    "throttle_rate": "16MiB",
    "servers": ",".join(SERVER_NAMES),
    "workers": "1,2,4",
    "timeout": 60.0,
}
_QUICK: dict[str, Any] = {
    "sizes": "4MiB,256KiB",
    "clients": 20,
    "idle_sessions": 50,
    "churn_clients": 8,
    "duration": 1.0,
    "repeat": 1,
    "repeat_many": 2,  # rounds across the servers, so that the smoke test runs them
    "throttle_rate": "4MiB",
    "servers": "ftp-cluster,pyftpdlib",
    "workers": "2",
    "timeout": 15.0,
}


def parse_size(text: str) -> int:
    """``1GiB``, ``10MiB``, ``512k``, ``4096`` -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 10MiB, 512KiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parser() -> argparse.ArgumentParser:
    scenarios = ", ".join(f"{s.number}={s.key}" for s in SCENARIOS)
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load benchmark: ftp-cluster side by side with pyftpdlib, aioftp and vsftpd.",
        epilog="Defaults are the full benchmark of issue 4; --quick picks tiny ones. "
        "See bench/README.md.",
    )
    add = parser.add_argument
    add(
        "--scenario",
        action="append",
        default=[],
        metavar="N|KEY[,...]",
        help=f"scenarios to run (repeatable; default all): {scenarios}",
    )
    add(
        "--sizes",
        metavar="SINGLE,MANY",
        help=f"single-stream file size and per-client file size (default {_FULL['sizes']})",
    )
    add("--clients", type=int, help=f"clients in scenarios 3-5 (default {_FULL['clients']})")
    add(
        "--idle-sessions",
        type=int,
        help=f"idle sessions in scenario 6 (default {_FULL['idle_sessions']})",
    )
    add(
        "--churn-clients",
        type=int,
        help=f"concurrent clients in scenarios 7 and 9 (default {_FULL['churn_clients']})",
    )
    add(
        "--duration",
        type=float,
        help=f"seconds of churn and of throttled transfer (default {_FULL['duration']:g})",
    )
    add(
        "--repeat",
        type=int,
        help=f"runs of each single-stream scenario (default {_FULL['repeat']})",
    )
    add(
        "--repeat-many",
        type=int,
        help="rounds of the login and N x RETR/STOR scenarios (3-5), each server once "
        f"per round, median reported (default {_FULL['repeat_many']})",
    )
    add("--servers", metavar="NAME[,...]", help=f"servers to run (default {_FULL['servers']})")
    add(
        "--workers",
        metavar="N[,...]",
        help=f"ftp-cluster worker counts, one server each (default {_FULL['workers']})",
    )
    add(
        "--throttle-rate",
        metavar="SIZE",
        help="cluster-wide download limit per second in scenario 8 "
        f"(default {_FULL['throttle_rate']})",
    )
    add(
        "--client-procs",
        type=int,
        default=1,
        help="client processes sharing the load of scenarios 3-5 and 7 (default 1)",
    )
    add(
        "--timeout",
        type=float,
        help=f"seconds allowed for one session operation (default {_FULL['timeout']:g})",
    )
    add(
        "--out",
        type=Path,
        metavar="DIR",
        help="where results.json and the charts go (default bench/results/<timestamp>)",
    )
    add(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where to create the test files (default /dev/shm when it has room, else the "
        "temp directory); removed afterwards",
    )
    add(
        "--quick",
        action="store_true",
        help="smoke mode: seconds, tiny sizes, only ftp-cluster and pyftpdlib",
    )
    add("--no-charts", action="store_true", help="skip the PNG charts")
    return parser


def parse_options(argv: list[str] | None = None) -> tuple[Options, bool]:
    """Options of a run (explicit flags win over --quick's defaults) and whether to draw charts."""
    parser = _parser()
    args = parser.parse_args(argv)
    base = _QUICK if args.quick else _FULL

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return base[name] if value is None else value

    try:
        single, many = (parse_size(part) for part in _csv(pick("sizes")))
        scenarios = select([name for group in args.scenario for name in _csv(group)])
        workers = [int(n) for n in _csv(pick("workers"))]
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    servers = _csv(pick("servers"))
    unknown = [name for name in servers if name not in SERVER_NAMES]
    if unknown or any(n < 1 for n in workers):
        parser.error(f"unknown server(s) {unknown}" if unknown else "workers must be >= 1")
    settings = Settings(
        single_size=single,
        many_size=many,
        clients=pick("clients"),
        idle_sessions=pick("idle_sessions"),
        churn_clients=pick("churn_clients"),
        duration=pick("duration"),
        repeat=max(1, pick("repeat")),
        repeat_many=max(1, pick("repeat_many")),
        client_procs=max(1, args.client_procs),
        throttle_rate=parse_size(pick("throttle_rate")),
        throttle_streams=8,
        timeout=pick("timeout"),
    )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or _RESULTS / (f"{stamp}-quick" if args.quick else stamp)
    options = Options(settings, scenarios, servers, workers, out, args.quick, args.data_dir)
    return options, not args.no_charts


async def _main(options: Options) -> dict[str, Any]:
    # SIGTERM/SIGINT cancel the run, so every server, the temporary vsftpd user
    # and the test files are cleaned up by the runner's finally blocks.
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    return await run(options)


def main(argv: list[str] | None = None) -> int:
    options, charts = parse_options(argv)
    try:
        results = uvloop.run(_main(options))
    except asyncio.CancelledError:
        print("benchmark interrupted; servers stopped and files removed", file=sys.stderr)
        return 130
    options.out.mkdir(parents=True, exist_ok=True)
    json_path = options.out / "results.json"
    if charts:
        results["charts"] = [path.name for path in draw_all(results, options.out)]
    write_json(results, json_path)
    print(render_table(results))
    print(render_targets(results["targets"]))
    print(f"\nresults: {json_path}")
    for name in results.get("charts", []):
        print(f"chart:   {options.out / name}")
    return 0
