"""A private ``redis-server`` for a cluster that was given no Redis URL.

It listens on a unix socket in a fresh private directory (no TCP port, no
persistence) and is a child of the supervisor that dies with it: the child
asks the kernel for SIGKILL when its parent goes away (``PR_SET_PDEATHSIG``),
so even ``kill -9`` of the supervisor leaves no Redis behind. The kernel
sends that signal when the *thread* that forked exits; the supervisor forks
from its only thread.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from ftp_cluster.supervisor.lifeline import set_parent_death_signal

__all__ = ["EmbeddedRedis", "RedisMissingError"]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "redis-server is not installed: a cluster with more than one worker keeps its "
    "limits in Redis. Install it from the OS packages (Debian/Ubuntu: "
    "`sudo apt-get install redis-server`; Fedora: `sudo dnf install redis`; "
    "macOS: `brew install redis`) or give a running Redis with --redis-url / [redis] url."
)


class RedisMissingError(RuntimeError):
    """``redis-server`` cannot be found or does not start."""


def _die_with_parent() -> None:
    set_parent_death_signal(signal.SIGKILL)


class EmbeddedRedis:
    """One private ``redis-server`` child; :attr:`url` is where it listens."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise RedisMissingError(INSTALL_HINT)
        self._binary = found
        self._dir = Path(tempfile.mkdtemp(prefix="ftp-cluster-redis-"))
        self.socket_path = self._dir / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        args = [
            self._binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            "--loglevel", "warning",
            "--logfile", "",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded supervisor
            start_new_session=False,
        )
        self._wait_ready(timeout)
        log.info("embedded redis-server (pid %d) on %s", self._process.pid, self.url)

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RedisMissingError(
                    f"redis-server exited with status {self._process.returncode} at start"
                )
            if self.socket_path.exists():
                client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1)
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                finally:
                    client.close()
            time.sleep(0.02)
        self._terminate()
        raise RedisMissingError(f"redis-server did not answer PING within {timeout:.0f} s")

    def exited(self) -> int | None:
        """The exit status if the server has died (reaps it), else None."""
        if self._process is None:
            return None
        return self._process.poll()

    def restart(self) -> None:
        """Start again after a crash, on the same socket path (so the URL holds)."""
        self._terminate()
        self.start()

    def stop(self) -> None:
        """Stop the server and remove its directory; idempotent."""
        self._terminate()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _terminate(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
