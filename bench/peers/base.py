"""What every server under test provides: start on 127.0.0.1, report its process tree, stop.

Each server runs as its own process (or process tree) started by the harness,
so the harness can measure its memory, signal it, and kill whatever is left of
it. Servers are started in a new session: their process group is theirs alone
and can be killed as a whole without touching anything else.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = ["Peer", "PeerUnavailable", "Running", "ServeSpec", "TLSFiles", "free_port", "launch"]

_START_TIMEOUT = 30.0
_HARNESS_ROOT = Path(__file__).resolve().parents[2]  # so children can import ``bench``
_STOP_TIMEOUT = 15.0


class PeerUnavailable(Exception):
    """This server cannot run here (or cannot run this scenario); the message says why."""


@dataclass(frozen=True)
class TLSFiles:
    """The run's certificate and key (PEM), the same for every server that serves FTPS."""

    certificate: Path
    private_key: Path


@dataclass(frozen=True)
class ServeSpec:
    """What a scenario asks of a server. Every peer gets the same account and files."""

    root: Path  # real directory behind the virtual "/"
    user: str
    password: str
    write_speed_limit: int | None = None  # downloads, bytes/s, all sessions together
    maximum_connections: int | None = None
    maximum_connections_per_ip: int | None = None
    redis_url: str | None = None  # ftp-cluster only: use this Redis instead of its default
    tls: TLSFiles | None = None  # serve explicit FTPS (AUTH TLS) with these; the client speaks it
    defender: bool = False  # ftp-cluster only: [defender] on (never bans: threshold far off)
    extra_config: str = ""  # ftp-cluster only: TOML appended to its config ([accounts], users)


@dataclass
class Running:
    """A started server: where it listens and the process at the top of its tree."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)
    tls_ca: Path | None = None  # set when serving FTPS: the certificate the client trusts

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self) -> None:
        """SIGTERM, wait (bounded), then SIGKILL whatever is left of the server's processes.

        Descendants are collected first: some (vsftpd's sessions) move to a
        process group of their own and would survive a kill of the group.
        """
        descendants = _descendants(self.process.pid)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + _STOP_TIMEOUT
            while self.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for child in descendants:
            with contextlib.suppress(psutil.Error):
                child.kill()
        if self.process.poll() is None:
            self.process.wait(timeout=5)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


class Peer(abc.ABC):
    """One server under test, e.g. ``pyftpdlib`` or ``ftp-cluster-4``."""

    name: str
    notes: tuple[str, ...] = ()

    def unavailable(self) -> str | None:
        """Why this server cannot run on this machine at all, or None."""
        return None

    def version(self) -> str:
        return "unknown"

    def cannot_serve(self, spec: ServeSpec) -> str | None:
        """Why this server cannot apply ``spec`` (e.g. a cluster-wide throttle), or None."""
        return None

    def setup(self, root: Path, user: str, password: str) -> None:  # noqa: B027 - optional hook
        """Run-wide preparation (e.g. the system account ``user``) for files under ``root``.

        Raises PeerUnavailable to skip this server.
        """

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Undo :meth:`setup`; must be safe to call more than once."""

    @abc.abstractmethod
    async def start(self, spec: ServeSpec, workdir: Path) -> Running:
        """Start serving ``spec`` on 127.0.0.1; return once it accepts sessions."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def launch(
    argv: Sequence[str],
    workdir: Path,
    ready: re.Pattern[str],
    *,
    name: str,
    env: dict[str, str] | None = None,
    timeout: float = _START_TIMEOUT,
) -> tuple[subprocess.Popen[bytes], re.Match[str], Path]:
    """Start ``argv`` with output to a log file and wait for a line matching ``ready``.

    Output goes to a file, not a pipe, so a chatty server never blocks on a
    full pipe while the harness is busy measuring it.
    """
    log = workdir / f"{name}.log"
    if env is None:
        env = dict(os.environ)
    paths = [str(_HARNESS_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    with log.open("wb") as out:
        # Popen returns once the child is exec'd; nothing here waits on its output.
        process = subprocess.Popen(  # noqa: ASYNC220
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if match := ready.search(text):
            return process, match, log
        if process.poll() is not None:
            break
        await asyncio.sleep(0.05)
    why = "exited" if process.poll() is not None else f"was not ready after {timeout:.0f} s"
    await Running("127.0.0.1", 0, process, log).stop()
    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
    raise PeerUnavailable(f"{name} {why} (rc={process.returncode}): {tail or 'no output'}")
