"""A private redis-server for the scenarios that need one, and a command counter on it.

Never the system Redis: the server listens on a free port of 127.0.0.1 with no
persistence and a working directory of its own, and is stopped afterwards.

Commands are counted with ``MONITOR`` on a separate connection. MONITOR shows
every command a client sends and also the commands scripts run inside Redis
(marked ``[db lua]``); only the former cost a round trip, so ``lua`` lines are
excluded. (``INFO commandstats`` would count both.)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from bench.peers.base import PeerUnavailable, Running, free_port

__all__ = ["CommandCounter", "PrivateRedis"]

_START_TIMEOUT = 10.0
_MONITOR_MAX_SECONDS = 3600.0  # a counter lives for one scenario run; this is a backstop
_MONITOR_LINE = re.compile(rb'^\+\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]*)"')


class PrivateRedis:
    """A redis-server started by the harness for the harness."""

    def __init__(self) -> None:
        self.port = 0
        self._running: Running | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def version(self) -> str:
        result = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        )
        match = re.search(r"v=(\S+)", result.stdout)
        return match.group(1) if match else "unknown"

    async def start(self, workdir: Path) -> None:
        if shutil.which("redis-server") is None:
            raise PeerUnavailable("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
        argv += ["--maxclients", "10000"]
        log = workdir / "redis.log"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: ASYNC220 - returns at once, output to a file
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._running = Running("127.0.0.1", self.port, process, log)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError):
                if self.command(b"PING").startswith(b"+PONG"):
                    return
            await asyncio.sleep(0.05)
        await self.stop()
        raise PeerUnavailable(f"private redis-server did not start: {log.read_text()[-300:]}")

    def command(self, line: bytes) -> bytes:
        """Send one inline command and return the first reply chunk (for PING/INFO)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(line + b"\r\n")
            return sock.recv(1 << 16)

    def load(self) -> tuple[int, float]:
        """Script calls so far and Redis CPU seconds, from ``INFO`` (cheap, unlike MONITOR).

        Only EVALSHA is counted: ``commandstats`` also counts the commands
        that scripts run inside Redis.
        """
        stats = self.command(b"INFO commandstats").decode(errors="replace")
        calls = sum(int(m) for m in re.findall(r"^cmdstat_evalsha:calls=(\d+)", stats, re.M))
        cpu = self.command(b"INFO cpu").decode(errors="replace")
        used = re.findall(r"^used_cpu_(?:sys|user):([\d.]+)", cpu, re.M)
        return calls, sum(float(value) for value in used)

    def flush(self) -> None:
        """Empty the private Redis between scenarios."""
        self.command(b"FLUSHALL")

    async def stop(self) -> None:
        if self._running is not None:
            await self._running.stop()
            self._running = None


class CommandCounter:
    """Counts the commands clients send to a Redis, by command name, via MONITOR."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self._sock.sendall(b"MONITOR\r\n")
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._script_lines = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, name="redis-monitor", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            self.close()
            raise PeerUnavailable("MONITOR on the private Redis did not answer")

    def _read(self) -> None:
        buffer = b""
        self._sock.settimeout(0.2)
        deadline = time.monotonic() + _MONITOR_MAX_SECONDS
        while time.monotonic() < deadline:
            try:
                chunk = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\r\n")
            self._count(lines)

    def _count(self, lines: list[bytes]) -> None:
        with self._lock:
            for line in lines:
                if line == b"+OK":
                    self._ready.set()
                    continue
                match = _MONITOR_LINE.match(line)
                if match is None:
                    continue
                if match.group(1).startswith(b"lua"):
                    self._script_lines += 1
                else:
                    self._counts[match.group(2).decode(errors="replace").upper()] += 1

    def total(self) -> int:
        """Commands sent by clients so far (script-internal commands excluded)."""
        with self._lock:
            return sum(self._counts.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts.most_common())

    @property
    def script_commands(self) -> int:
        with self._lock:
            return self._script_lines

    def settle(self, quiet: float = 0.2, limit: float = 3.0) -> None:
        """Wait until no new line arrived for ``quiet`` seconds (MONITOR lags a little)."""
        deadline = time.monotonic() + limit
        last = -1
        while time.monotonic() < deadline:
            now = self.total() + self.script_commands
            if now == last:
                return
            last = now
            time.sleep(quiet)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=2)
