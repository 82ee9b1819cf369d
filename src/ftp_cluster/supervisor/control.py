"""How ``ftp-cluster stop|reload|status`` reach a running supervisor.

The pid file names the supervisor; next to it (``<pid-file>.sock``) the
supervisor serves a unix control socket from its main loop. A request is one
JSON line (``{"command": "status"}`` or ``{"command": "reload"}``), the answer
one JSON line, then the connection closes. ``reload`` answers once the new
configuration has been read and checked (``{"ok": false, "error": ...}`` when
it is broken); the workers are then replaced in the background. ``stop`` is a
plain SIGTERM to the pid, then a wait for the process to go.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil
import redis

from ftp_cluster.supervisor.listener import serve_waiting

__all__ = [
    "ControlError",
    "ControlServer",
    "PidFile",
    "control_path",
    "query_status",
    "read_pid",
    "request",
    "stop",
]

log = logging.getLogger(__name__)

Handler = Callable[[], dict[str, Any]]
_UNIX_PATH_MAX = 107
_REQUEST_TIMEOUT = 2.0
_MAX_REQUEST = 4096


class ControlError(RuntimeError):
    """The supervisor cannot be reached or refused the request."""


def control_path(pid_file: Path) -> Path:
    return pid_file.with_name(pid_file.name + ".sock")


# ------------------------------------------------------------------ pid file


def _is_supervisor(pid: int) -> bool:
    try:
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "ftp-cluster" in cmdline or "ftp_cluster" in cmdline


class PidFile:
    """The supervisor's pid file: written atomically, removed at exit."""

    def __init__(self, path: Path) -> None:
        self.path = path.absolute()

    def acquire(self) -> None:
        """Write our pid, unless a live supervisor already owns the file."""
        try:
            other: int | None = read_pid(self.path)
        except ControlError:
            other = None  # absent or garbage: ours to write
        if other is not None and other != os.getpid() and _is_supervisor(other):
            raise ControlError(
                f"ftp-cluster is already running with pid file {self.path} (pid {other}); "
                "stop it or give another --pid-file"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.write_text(f"{os.getpid()}\n")
        os.replace(temporary, self.path)

    def release(self) -> None:
        """Remove the file if it is still ours."""
        with contextlib.suppress(ControlError, OSError):
            if read_pid(self.path) == os.getpid():
                self.path.unlink()


def read_pid(pid_file: Path) -> int:
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        raise ControlError(f"no pid file at {pid_file}: is ftp-cluster running?") from None
    except OSError as exc:
        raise ControlError(f"cannot read pid file {pid_file}: {exc}") from None
    if not text.isdigit():
        raise ControlError(f"pid file {pid_file} does not hold a pid: {text[:40]!r}")
    return int(text)


# -------------------------------------------------------------------- server


class ControlServer:
    """The supervisor's end: a listening unix socket polled by its main loop."""

    def __init__(self, path: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = path
        self._handlers = handlers
        if len(os.fsencode(path)) > _UNIX_PATH_MAX:
            raise ControlError(f"control socket path too long for a unix socket: {path}")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # owner only: the socket can reload the server
        try:
            self._sock.bind(str(path))
        finally:
            os.umask(old_umask)
        self._sock.listen(16)
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def handle(self) -> None:
        """Serve the connections waiting (called when the socket is readable)."""
        serve_waiting(self._sock, self._serve)

    def _serve(self, conn: socket.socket) -> None:
        # Requests are one short line from a local client: a bounded blocking
        # read keeps the supervisor's loop simple and never stalls it for long.
        conn.settimeout(0.5)
        try:
            data = b""
            while b"\n" not in data and len(data) < _MAX_REQUEST:
                chunk = conn.recv(_MAX_REQUEST)
                if not chunk:
                    break
                data += chunk
            answer = self._answer(data)
            conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError as exc:
            log.debug("control connection failed: %s", exc)

    def _answer(self, data: bytes) -> dict[str, Any]:
        try:
            command = json.loads(data.split(b"\n", 1)[0]).get("command")
        except (ValueError, AttributeError):
            return {"ok": False, "error": "bad request: expected one JSON line"}
        handler = self._handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}"}
        try:
            return handler()
        except Exception as exc:  # a control request must never kill the supervisor
            log.exception("control command %r failed", command)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


# -------------------------------------------------------------------- client


def request(pid_file: Path, command: str, timeout: float = _REQUEST_TIMEOUT) -> dict[str, Any]:
    """Send one command to the supervisor owning ``pid_file``; its JSON answer."""
    pid = read_pid(pid_file)
    if not psutil.pid_exists(pid):
        raise ControlError(f"ftp-cluster (pid {pid} from {pid_file}) is not running")
    path = control_path(pid_file)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            sock.sendall(json.dumps({"command": command}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise ControlError(f"cannot talk to ftp-cluster (pid {pid}) at {path}: {exc}") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError(f"unreadable answer from ftp-cluster (pid {pid})") from None
    if not isinstance(answer, dict):
        raise ControlError(f"unexpected answer from ftp-cluster (pid {pid}): {answer!r}")
    return answer


def stop(pid_file: Path, timeout: float, *, fast: bool = False) -> int:
    """SIGTERM (or SIGINT) the supervisor and wait until it has exited; its pid."""
    pid = read_pid(pid_file)
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        raise ControlError(f"ftp-cluster (pid {pid} from {pid_file}) is not running") from None
    process.send_signal(signal.SIGINT if fast else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _running(process):
        if time.monotonic() > deadline:
            raise ControlError(f"ftp-cluster (pid {pid}) still running after {timeout:.0f} s")
        time.sleep(0.05)
    return pid


def _running(process: psutil.Process) -> bool:
    # Exited but not yet reaped by its parent (a zombie) counts as stopped:
    # the parent is not us, so we cannot wait for it.
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -------------------------------------------------------------------- status


def redis_state(url: str, namespace: str) -> dict[str, Any]:
    """PING the cluster's Redis and read the cluster-wide counts from it."""
    from ftp_cluster.shared.limits.redis.admin import cluster_counts  # noqa: PLC0415
    from ftp_cluster.shared.limits.redis.connection import redact, sync_client  # noqa: PLC0415

    state: dict[str, Any] = {"url": redact(url), "namespace": namespace}
    started = time.monotonic()
    try:
        connection = sync_client(url, timeout=1.0)
    except (ValueError, redis.RedisError) as exc:
        return {**state, "state": "down", "error": str(exc)}
    try:
        connection.client.ping()
        state["state"] = "up"
        state["ping_ms"] = round((time.monotonic() - started) * 1000, 2)
        state["cluster"] = cluster_counts(connection.client, namespace)
    except (redis.RedisError, redis.RedisClusterException, OSError) as exc:
        state["state"] = "down"
        state["error"] = str(exc)
    finally:
        connection.close()
    return state


def query_status(pid_file: Path) -> dict[str, Any]:
    """The supervisor's status, with the Redis state and cluster-wide counts."""
    status = request(pid_file, "status")
    redis_info = status.get("redis")
    if isinstance(redis_info, dict) and isinstance(redis_info.get("url"), str):
        redis_info.update(redis_state(redis_info["url"], str(redis_info.get("namespace"))))
    return status
