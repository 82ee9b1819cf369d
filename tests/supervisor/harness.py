"""A real ``ftp-cluster start`` process for the supervisor tests.

The cluster runs as ``python -m ftp_cluster.supervisor.cli start --port 0``
with its stderr in a file; the port comes from the "listening on" line.
:meth:`Cluster.kill` (run by the fixture whatever happens) SIGKILLs the
supervisor and every process it ever had, so no test leaves orphans.
"""

from __future__ import annotations

import contextlib
import ftplib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

LISTENING = re.compile(
    r"^ftp-cluster listening on ftp://(?P<host>.+):(?P<port>\d+) \((?P<n>\d+) workers\)$"
)


def cli(
    *args: str, timeout: float = 30, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``ftp-cluster`` command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "ftp_cluster.supervisor.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env=env,
        check=False,
    )


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll until ``predicate()`` is truthy; its value, or AssertionError at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class Cluster:
    """One supervisor process and what it spawned."""

    def __init__(self, tmp_path: Path, args: Sequence[str] = (), workers: int | None = 2) -> None:
        self.args = tuple(args)
        self.root = tmp_path / "root"
        self.root.mkdir(exist_ok=True)
        self.pid_file = tmp_path / "ftp-cluster.pid"
        self.log_path = tmp_path / "supervisor.log"
        self._log = self.log_path.open("wb")
        command = [
            sys.executable, "-m", "ftp_cluster.supervisor.cli", "start",
            "--port", "0", "--root", str(self.root), "--pid-file", str(self.pid_file),
            *(["--workers", str(workers)] if workers is not None else []), *args,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log)
        self.seen: set[int] = set()  # every descendant pid ever observed, for kill()
        self.host = "127.0.0.1"
        self.port = 0
        self.workers = 0
        self.stdout = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_listening(self, timeout: float = 20) -> None:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.stdout:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                raise AssertionError(f"no listening line; log:\n{self.log()}")
            if select.select([fd], [], [], min(remaining, 0.2))[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise AssertionError(f"stdout closed; log:\n{self.log()}")
                self.stdout += chunk
        match = LISTENING.match(self.stdout.split(b"\n")[0].decode())
        assert match, self.stdout
        self.host, self.port, self.workers = match["host"], int(match["port"]), int(match["n"])
        self.children()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.seen.update(p.pid for p in found)
        return found

    def worker_pids(self) -> set[int]:
        """Running workers (an exited one not yet reaped is not counted)."""
        return alive({p.pid for p in self.children() if not _is_redis(p)})

    def redis_pids(self) -> set[int]:
        return alive({p.pid for p in self.children() if _is_redis(p)})

    def status(self) -> dict[str, Any]:
        done = cli("status", "--json", "--pid-file", str(self.pid_file))
        assert done.returncode == 0, done.stderr
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    def accepting_pids(self) -> set[int]:
        return {w["pid"] for w in self.status()["workers"] if w["state"] == "accepting"}

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout)
        self._log.flush()
        return code

    def client(self, login: bool = True, timeout: float = 10) -> ftplib.FTP:
        ftp = ftplib.FTP(timeout=timeout)
        ftp.connect(self.host, self.port)
        if login:
            ftp.login()
        return ftp

    def session(self) -> None:
        """One connect / login / quit round trip."""
        ftp = self.client()
        try:
            ftp.voidcmd("NOOP")
        finally:
            ftp.quit()

    def kill(self) -> None:
        """SIGKILL the supervisor and everything it ever spawned; close our ends."""
        self.children()
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        for pid in alive(self.seen):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        # Orphans are reaped by whoever adopted them: a zombie counts as gone.
        wait_for(lambda: not alive(self.seen), timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def assert_no_secret(log: str, secrets: set[str], where: str) -> None:
    """Fail if any configured password or hash appears in ``log``."""
    for secret in secrets:
        assert secret not in log, f"a configured password or hash is in {where}"


def _is_redis(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "redis-server" in process.name() or "redis-server" in " ".join(process.cmdline())
    return False


def alive(pids: set[int]) -> set[int]:
    """Which of ``pids`` still run (zombies count as gone)."""
    running = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.add(pid)
    return running
