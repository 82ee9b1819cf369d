"""ftp-cluster as a peer, through its documented CLI and a generated TOML config.

``ftp-cluster start --workers N --config FILE --pid-file F`` runs in the
foreground and prints ``ftp-cluster listening on ftp://HOST:PORT (N workers)``
once every worker accepts; SIGTERM stops it. With more than one worker and no
``[redis] url`` it starts its own embedded redis-server as a child, which is
then part of its process tree (and of its memory figures).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.peers.base import Peer, Running, ServeSpec, free_port, launch

__all__ = ["FtpClusterPeer", "cli_path"]

_READY = re.compile(r"ftp-cluster listening on ftp://([\d.]+):(\d+) \((\d+) workers?\)")
_STATUS_TIMEOUT = 10.0


def cli_path() -> str | None:
    """The ``ftp-cluster`` script next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name("ftp-cluster")
    if beside.exists():
        return str(beside)
    return shutil.which("ftp-cluster")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


class FtpClusterPeer(Peer):
    """``ftp-cluster-N``: the supervisor with N workers."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.name = f"ftp-cluster-{workers}"
        backend = "in-process limits" if workers == 1 else "embedded redis-server"
        self.notes = (
            f"{workers} worker(s); default limits backend: {backend}",
            "log level WARNING (no per-session INFO lines, as for pyftpdlib)",
        )

    def unavailable(self) -> str | None:
        cli = cli_path()
        if cli is None:
            return "the ftp-cluster command is not installed (pip install -e .)"
        result = subprocess.run(
            [cli, "start", "--help"], capture_output=True, text=True, check=False, timeout=30
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            return f"`ftp-cluster start --help` failed: {' '.join(tail) or result.returncode}"
        return None

    def version(self) -> str:
        try:
            return metadata.version("ftp-cluster")
        except metadata.PackageNotFoundError:
            return "unknown"

    def config(self, spec: ServeSpec, port: int) -> str:
        """The TOML config for ``spec`` (every peer gets the same account and root)."""
        server: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": port,
            "workers": self.workers,
            "root": str(spec.root),
            "idle_timeout": 600,
            "graceful_timeout": 5,
        }
        if spec.write_speed_limit is not None:
            server["write_speed_limit"] = spec.write_speed_limit
        if spec.maximum_connections is not None:
            server["maximum_connections"] = spec.maximum_connections
        if spec.maximum_connections_per_ip is not None:
            server["maximum_connections_per_ip"] = spec.maximum_connections_per_ip
        lines = ["[server]", *(f"{key} = {_toml_value(value)}" for key, value in server.items())]
        if spec.redis_url is not None:
            lines += ["", "[redis]", f"url = {_toml_value(spec.redis_url)}"]
        if spec.tls is not None:  # TLS required for logins and data, as for every FTPS peer
            lines += ["", "[tls]", f"certificate = {_toml_value(spec.tls.certificate)}"]
            lines += [f"private_key = {_toml_value(spec.tls.private_key)}", 'required = "all"']
            lines += ['session_reuse = "required"']
        if spec.defender:
            # Every connection is checked against the bans, nobody reaches the threshold.
            lines += ["", "[defender]", "enabled = true", "threshold = 1000000000"]
            lines += ["login_delay = 0"]
        lines += ["", "[[users]]", f"login = {_toml_value(spec.user)}"]
        lines += [f"password = {_toml_value(spec.password)}", 'home_path = "/"']
        return "\n".join(lines) + "\n" + spec.extra_config

    async def start(self, spec: ServeSpec, workdir: Path) -> Running:
        cli = cli_path()
        assert cli is not None  # unavailable() said so before any start
        config = workdir / f"{self.name}.toml"
        config.write_text(self.config(spec, free_port()))
        pid_file = workdir / f"{self.name}.pid"
        argv = [cli, "start", "--workers", str(self.workers), "--config", str(config)]
        # Without the session log, as pyftpdlib runs without its per-session
        # INFO lines: the bench compares the servers, not their loggers (at
        # INFO, 3 lines per session cost about 46 us, a third of a churn).
        argv += ["--pid-file", str(pid_file), "--log-level", "WARNING"]
        process, match, log = await launch(argv, workdir, _READY, name=self.name)
        extra = {"pid_file": str(pid_file), "config": str(config)}
        return Running(match.group(1), int(match.group(2)), process, log, extra)


def status(running: Running) -> dict[str, Any] | None:
    """``ftp-cluster status --json`` of a running peer, or None if it cannot say."""
    cli = cli_path()
    if cli is None or "pid_file" not in running.extra:
        return None
    try:
        result = subprocess.run(
            [cli, "status", "--json", "--pid-file", running.extra["pid_file"]],
            capture_output=True,
            text=True,
            check=False,
            timeout=_STATUS_TIMEOUT,
        )
        value = json.loads(result.stdout) if result.returncode == 0 else None
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None
