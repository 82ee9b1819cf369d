"""Client-side helpers for the end-to-end tests of a running ``ftp-cluster``.

The clusters themselves come from the supervisor tests' harness
(:mod:`tests.supervisor.harness`, fixture ``start_cluster``); this module adds
what the limit tests need on top: config files, connection attempts from a
chosen source address (127.0.0.2 is the "foreign" client), per-worker and
cluster-wide counts from ``ftp-cluster status --json``, a clean-stop check,
and a MONITOR tap that counts the commands clients send to a private Redis.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import json
import signal
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, alive, wait_for

__all__ = [
    "Attempts",
    "CommandTap",
    "Download",
    "MiB",
    "TomlValue",
    "assert_stopped_cleanly",
    "attempt",
    "attempt_many",
    "close_all",
    "cluster_sessions",
    "config_toml",
    "login_many",
    "quit_all",
    "refuses_connections",
    "start_with_redis",
    "status_summary",
    "stop_cleanly",
    "try_login",
    "usable",
    "wait_cluster_sessions",
    "wait_worker_figures",
    "wait_worker_sessions",
]

MiB = 1024 * 1024
#: How long one client operation may take before the test fails (loaded box).
CLIENT_TIMEOUT = 10.0
#: Seconds between two ``status --json`` polls (each one runs a subprocess).
STATUS_INTERVAL = 0.15

TomlValue = str | int | float | bool | Sequence["TomlValue"] | Mapping[str, "TomlValue"]


# ---------------------------------------------------------------- config


def _toml(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return "[" + ", ".join(_toml(item) for item in value) + "]"


def config_toml(
    server: Mapping[str, TomlValue] | None = None,
    redis: Mapping[str, TomlValue] | None = None,
    users: Sequence[Mapping[str, TomlValue]] = (),
    tls: Mapping[str, TomlValue] | None = None,
) -> str:
    """A config file from plain values: ``[server]``, ``[redis]``, ``[tls]``, ``[[users]]``."""
    lines: list[str] = []
    for table, values in (("server", server), ("redis", redis), ("tls", tls)):
        if values:
            lines.append(f"[{table}]")
            lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    for user in users:
        lines.append("[[users]]")
        lines += [f"{key} = {_toml(value)}" for key, value in user.items()]
    return "\n".join(lines) + "\n"


def start_with_redis(start_cluster: StartCluster, url: str, workers: int, config: str) -> Cluster:
    """A cluster of ``workers`` using the Redis at ``url``, configured by ``config``."""
    return start_cluster(workers=workers, config=config, args=["--redis-url", url])


# --------------------------------------------------------------- clients


def attempt(cluster: Cluster, source: str = "127.0.0.1") -> ftplib.FTP | str:
    """Connect from ``source``: the session if greeted with 220, else the refusal reply."""
    ftp = ftplib.FTP(timeout=CLIENT_TIMEOUT)
    try:
        ftp.connect(cluster.host, cluster.port, source_address=(source, 0))
    except ftplib.error_temp as refusal:  # 421
        ftp.close()
        return str(refusal)
    except BaseException:
        ftp.close()
        raise
    return ftp


@dataclass
class Attempts:
    """Sessions admitted and refusal replies of a batch of connection attempts."""

    admitted: list[ftplib.FTP] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many were admitted."""
        return len(self.admitted)

    def codes(self) -> set[str]:
        return {reply[:3] for reply in self.refused}

    def __repr__(self) -> str:
        return f"<{self.count} admitted, refused: {sorted(set(self.refused))}>"


def attempt_many(cluster: Cluster, count: int, source: str = "127.0.0.1") -> Attempts:
    """``count`` connection attempts at once, so that the workers race to admit them."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(lambda _: attempt(cluster, source), range(count)))
    found = Attempts()
    for result in results:
        if isinstance(result, str):
            found.refused.append(result)
        else:
            found.admitted.append(result)
    return found


def try_login(ftp: ftplib.FTP, user: str = "anonymous", password: str = "") -> str:
    """Log in; the final reply, whether 230 or a refusal (530)."""
    try:
        return ftp.login(user, password)
    except ftplib.error_perm as refusal:
        return str(refusal)


def refused_login(cluster: Cluster, user: str, password: str) -> None:
    """Connect to ``cluster`` and see the login of ``user`` with a wrong ``password`` refused."""
    ftp = ftplib.FTP(timeout=CLIENT_TIMEOUT)
    try:
        ftp.connect(cluster.host, cluster.port)
        reply = try_login(ftp, user, password)
        assert not reply.startswith("230"), f"{user} logged in with a wrong password"
    finally:
        ftp.close()


def login_many(sessions: Sequence[ftplib.FTP], user: str, password: str = "") -> list[str]:
    """Log every session in as ``user`` at once; the final replies, in order."""
    with ThreadPoolExecutor(max_workers=max(1, len(sessions))) as pool:
        return list(pool.map(lambda ftp: try_login(ftp, user, password), sessions))


def quit_all(sessions: Iterable[ftplib.FTP]) -> None:
    """QUIT each session: the server releases its slots before it answers 221."""
    for ftp in sessions:
        if ftp.sock is None:  # already quit or closed
            continue
        try:
            ftp.quit()
        except (OSError, EOFError, ftplib.Error):
            ftp.close()


def close_all(sessions: Iterable[ftplib.FTP]) -> None:
    for ftp in sessions:
        ftp.close()


def usable(ftp: ftplib.FTP) -> bool:
    """Whether the session still answers (its worker is alive and kept it)."""
    try:
        ftp.voidcmd("NOOP")
    except (OSError, EOFError, ftplib.Error):
        return False
    return True


@dataclass
class Download:
    """One RETR in a thread: what arrived and when (monotonic clock)."""

    ftp: ftplib.FTP
    name: str
    received: int = 0
    first_byte: float | None = None
    last_byte: float | None = None
    reply: str = ""
    error: BaseException | None = None
    data: io.BytesIO | None = None
    thread: threading.Thread | None = None

    def start(self, keep_data: bool = False) -> Download:
        self.data = io.BytesIO() if keep_data else None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _on_data(self, chunk: bytes) -> None:
        now = time.monotonic()
        if self.first_byte is None:
            self.first_byte = now
        self.last_byte = now
        self.received += len(chunk)
        if self.data is not None:
            self.data.write(chunk)

    def _run(self) -> None:
        try:
            self.reply = self.ftp.retrbinary(f"RETR {self.name}", self._on_data)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"RETR {self.name} still running after {timeout} s"
        if self.error is not None:
            raise AssertionError(f"RETR {self.name} failed: {self.error!r}") from self.error


# ---------------------------------------------------------------- status


def wait_worker_sessions(cluster: Cluster, total: int, timeout: float = 5.0) -> dict[int, int]:
    """Sessions per worker pid, once the heartbeats add up to ``total``."""
    return wait_worker_figures(cluster, "sessions", total, timeout)


def wait_worker_figures(
    cluster: Cluster, figure: str, total: int, timeout: float = 5.0
) -> dict[int, int]:
    """A heartbeat figure (``sessions``, ``accepted``, ...) per worker pid, once
    the workers' figures add up to ``total``."""

    def per_worker() -> dict[int, int] | None:
        workers = cluster.status()["workers"]
        counts = {int(w["pid"]): int(w[figure]) for w in workers}
        return counts if sum(counts.values()) == total else None

    try:
        found: dict[int, int] = wait_for(per_worker, timeout, STATUS_INTERVAL)
    except AssertionError:
        workers = cluster.status()["workers"]
        raise AssertionError(
            f"workers' {figure} are {[w[figure] for w in workers]}, not {total} in all"
        ) from None
    return found


def cluster_sessions(cluster: Cluster) -> int | None:
    """Live connection leases in Redis for the cluster's namespace (None: Redis down)."""
    state = cluster.status()["redis"]
    if state.get("state") != "up":
        return None
    return int(state["cluster"]["sessions"])


def wait_cluster_sessions(cluster: Cluster, expected: int, timeout: float = 5.0) -> None:
    try:
        wait_for(lambda: cluster_sessions(cluster) == expected, timeout, STATUS_INTERVAL)
    except AssertionError:
        raise AssertionError(
            f"Redis holds {cluster_sessions(cluster)} session leases, not {expected}"
        ) from None


def stop_cleanly(cluster: Cluster, timeout: float = 20.0) -> None:
    """SIGTERM the supervisor: it must exit 0 and leave no process behind."""
    cluster.children()  # remember every current worker
    cluster.send(signal.SIGTERM)
    assert_stopped_cleanly(cluster, timeout)


def assert_stopped_cleanly(cluster: Cluster, timeout: float = 20.0) -> None:
    """The supervisor exits 0 and every process it had is gone."""
    code = cluster.wait(timeout)
    assert code == 0, f"supervisor exited {code}; log:\n{cluster.log()[-3000:]}"
    try:
        wait_for(lambda: not alive(cluster.seen), timeout=5)
    except AssertionError:
        raise AssertionError(f"processes outlived the supervisor: {alive(cluster.seen)}") from None


def refuses_connections(host: str, port: int) -> bool:
    """Whether nothing listens any more (connection refused)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


# ----------------------------------------------------------------- Redis


class CommandTap:
    """Counts the commands clients send to a Redis, by watching its MONITOR feed.

    MONITOR shows commands a Lua script runs with ``[<db> lua]`` as their
    source; those run inside Redis and are not counted. The tap's own
    connection issues nothing but MONITOR.
    """

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
        self._sock.sendall(b"MONITOR\r\n")
        self._buffer = b""
        first = self._line()
        assert first == b"+OK", first
        self._sock.settimeout(0.1)
        self.commands: list[tuple[float, str]] = []  # (Redis clock, command name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise EOFError("MONITOR connection closed")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                line = self._line()
            except TimeoutError:
                continue
            except (OSError, EOFError):
                return
            self._record(line.decode(errors="replace"))

    def _record(self, line: str) -> None:
        # +1700000000.123456 [0 127.0.0.1:40000] "EVALSHA" "abc..." ...
        stamp, _, rest = line.removeprefix("+").partition(" [")
        source, _, command = rest.partition("] ")
        if source.endswith(" lua"):
            return
        name = command.split(" ", 1)[0].strip('"').upper()
        with contextlib.suppress(ValueError):
            self.commands.append((float(stamp), name))

    def between(self, start: float, end: float) -> list[str]:
        """Client commands with a Redis timestamp in [start, end] (``time.time()`` clock)."""
        return [name for stamp, name in self.commands if start <= stamp <= end]

    def close(self) -> None:
        time.sleep(0.3)  # let the feed catch up with what was already sent
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


def status_summary(status: Mapping[str, Any]) -> str:
    """One line per worker, for assertion messages."""
    return "; ".join(
        f"slot {w['slot']} pid {w['pid']} {w['state']} sessions {w['sessions']}"
        for w in status["workers"]
    )
