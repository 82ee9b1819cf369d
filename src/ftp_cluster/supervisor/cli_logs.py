"""``ftp-cluster reopen-logs``: have every worker reopen the transfer log.

For logrotate's ``postrotate``: after it renamed the file, this sends
SIGUSR1 to the supervisor, which sends SIGUSR2 to each worker (SIGUSR1 is a
worker's "retire" signal); each worker then opens ``[logging]
transfer_log`` anew and writes its next lines to the new file. The server
log is stderr, which the service manager owns.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

__all__ = ["add_reopen_logs", "reopen_logs"]


def add_reopen_logs(commands: Any) -> None:
    """Register the verb on ``build_parser``'s subcommands (its ``--pid-file`` is added there)."""
    commands.add_parser(
        "reopen-logs", help="reopen the transfer log in every worker (after logrotate)"
    )


def reopen_logs(args: argparse.Namespace) -> int:
    from ftp_cluster.supervisor.control import ControlError, read_pid  # noqa: PLC0415

    try:
        pid = read_pid(args.pid_file)
        os.kill(pid, signal.SIGUSR1)
    except ControlError as exc:
        print(f"ftp-cluster: {exc}", file=sys.stderr, flush=True)
        return 1
    except ProcessLookupError:
        print(
            f"ftp-cluster: ftp-cluster (pid {pid} from {args.pid_file}) is not running",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print(f"ftp-cluster (pid {pid}): reopening the logs")
    return 0
