"""A library :class:`~ftp_cluster.Server` running in its own event-loop thread.

Blocking clients (ftplib, curl, lftp) talk to it from the test thread.
Cluster tests reuse the supervisor tests' ``start_cluster`` fixture and check
with ``no_orphans`` that nothing they started outlives them.
"""

from __future__ import annotations

import asyncio
import ftplib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psutil
import pytest
import uvloop

from ftp_cluster import Server
from tests.e2e.cluster import close_all
from tests.supervisor.conftest import start_cluster
from tests.supervisor.harness import alive, assert_no_secret

__all__ = ["RunningServer", "ServerFactory", "held", "no_orphans", "start_cluster"]


class RunningServer:
    """A server started in a background loop; ``call`` runs coroutines there."""

    def __init__(self, make: Callable[[], Server], host: str, loop: asyncio.AbstractEventLoop):
        self.host = host
        self.loop = loop
        self._thread = threading.Thread(target=loop.run_forever, daemon=True)
        self._thread.start()
        self.server: Server = self.call(self._make(make))
        self.call(self.server.start(host, 0))
        self.port: int = self.server.sockets[0].getsockname()[1]

    @staticmethod
    async def _make(make: Callable[[], Server]) -> Server:
        return make()

    def call(self, coroutine: Any, timeout: float = 30) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def client(self, user: str = "anonymous", password: str = "") -> ftplib.FTP:
        ftp = ftplib.FTP(timeout=10)
        ftp.connect(self.host, self.port)
        if user:
            ftp.login(user, password)
        return ftp

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ftp://{host}:{self.port}"

    def stop(self) -> None:
        async def _stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        try:
            self.call(_stop(), timeout=15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


ServerFactory = Callable[..., RunningServer]


class _Records(logging.Handler):
    """Keeps every record the server's loggers emit, down to DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(
            f"{r.getMessage()} {r.args!r} {getattr(r, 'fields', '')} {r.exc_text or ''}"
            for r in self.records
        )


@pytest.fixture
def run_server() -> Iterator[ServerFactory]:
    """``run_server(lambda: Server(...), host=..., loop="uvloop"|"asyncio")``.

    Everything the servers log (at DEBUG, the most they say) is checked at
    the end for the passwords and hashes they were configured with.
    """
    started: list[RunningServer] = []
    records = _Records()
    logger = logging.getLogger("ftp_cluster")
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)

    def start(
        make: Callable[[], Server], host: str = "127.0.0.1", loop: str = "uvloop"
    ) -> RunningServer:
        event_loop = uvloop.new_event_loop() if loop == "uvloop" else asyncio.new_event_loop()
        running = RunningServer(make, host, event_loop)
        started.append(running)
        return running

    try:
        yield start
        for running in started:
            running.stop()
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    secrets = {
        secret
        for running in started
        for user in running.server.users.users
        for secret in (user.password, user.password_hash)
        if secret
    }
    assert_no_secret(records.text(), secrets, "the server log")


@pytest.fixture
def no_orphans(tmp_path: Path) -> Iterator[None]:
    """Fail if a process the test started outlives its fixtures' teardown.

    Request it before the fixtures that start processes (``pytestmark``
    ``usefixtures``), so that its check runs after their finalizers. It looks
    for new children of the test process (redis-servers, supervisors) and for
    any process whose command line names the test's directory (workers, which
    lose their parent when the supervisor dies).
    """
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    yield
    deadline = time.monotonic() + 5
    while (left := _leftovers(before, str(tmp_path))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"


def _leftovers(before: set[int], marker: str) -> list[str]:
    found: set[int] = {c.pid for c in psutil.Process().children(recursive=True)} - before
    for process in psutil.process_iter(["pid", "cmdline"]):
        if marker in " ".join(process.info["cmdline"] or ()):
            found.add(process.info["pid"])
    found = alive(found)
    return [_describe(pid) for pid in sorted(found)]


def _describe(pid: int) -> str:
    try:
        return f"{pid} {' '.join(psutil.Process(pid).cmdline())[:200]}"
    except psutil.Error:
        return str(pid)


@pytest.fixture
def held() -> Iterator[list[ftplib.FTP]]:
    """Client sessions a test keeps open; closed whatever happens."""
    sessions: list[ftplib.FTP] = []
    yield sessions
    close_all(sessions)
