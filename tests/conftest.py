"""Fixtures every test directory may use: real redis-server and PostgreSQL processes.

Tests only ever talk to Redis servers started here, on free loopback ports
and private unix sockets; the system Redis (6379) is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

if TYPE_CHECKING:
    from tests.redis_cluster import LocalCluster

from tests.postgres import PostgresServer, find_binaries

__all__ = ["RedisServer", "free_port"]

_STARTUP_TIMEOUT = 10.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-minutes",
        type=float,
        default=0.0,
        help="run the soak test (tests/soak) for this many minutes; 0 (default): skip it",
    )


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A private ``redis-server`` without persistence; stop and start it at will.

    It keeps its TCP port and socket path across restarts, so clients can
    reconnect to "the same Redis" after it lost all its data.
    """

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.socket_path = directory / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}?db=0"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("redis-server is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (empty) and wait until it answers PING."""
        if self.running:
            return
        log = self.directory / "redis.log"
        command = [
            self.executable,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(log),
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited at startup:\n{tail}")
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING within {_STARTUP_TIMEOUT} s")

    def _answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.exceptions.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server; its data is gone (no persistence)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextlib.contextmanager
    def hung(self) -> Iterator[None]:
        """Stop the process (SIGSTOP) for the block: it answers nothing, loses nothing."""
        os.kill(self.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.pid, signal.SIGCONT)

    def client(self) -> redis.Redis:
        """A blocking client for inspecting this server in tests."""
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)


def _redis_executable() -> str:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail("redis-server not found: install it with `apt-get install redis-server`")
    return executable


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the whole session. Do not stop it: use ``redis_factory`` for that."""
    directory = Path(tempfile.mkdtemp(prefix="ftpc-redis-"))
    server = RedisServer(_redis_executable(), directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_factory() -> Iterator[Callable[[], RedisServer]]:
    """Starts dedicated Redis servers (for tests that stop or restart them)."""
    executable = _redis_executable()
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        # A short private path: unix socket paths are limited to ~100 bytes.
        server = RedisServer(executable, Path(tempfile.mkdtemp(prefix="ftpc-redis-")))
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def redis_namespace() -> str:
    """A key prefix no other test uses, so tests can share ``redis_server``."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """One 3-master Redis Cluster (a replica each) for the session; do not kill its nodes."""
    yield from _cluster()


@pytest.fixture
def redis_cluster_factory() -> Iterator[Callable[..., LocalCluster]]:
    """Starts dedicated Redis Clusters (for tests that kill their nodes).

    ``replicas``: per master (default 1); ``tls_password``: TLS on every
    node, which all ask for this password.
    """
    clusters: list[Iterator[LocalCluster]] = []

    def start(*, replicas: int = 1, tls_password: str | None = None) -> LocalCluster:
        running = _cluster(replicas=replicas, tls_password=tls_password)
        clusters.append(running)
        return next(running)

    yield start
    for running in clusters:
        with contextlib.suppress(StopIteration):
            next(running)


def _cluster(*, replicas: int = 1, tls_password: str | None = None) -> Iterator[LocalCluster]:
    from tests.redis_cluster import LocalCluster, Secrets  # noqa: PLC0415

    directory = Path(tempfile.mkdtemp(prefix="ftpc-cluster-"))
    secrets = None if tls_password is None else Secrets.make(directory, tls_password)
    cluster = LocalCluster(_redis_executable(), directory, replicas=replicas, secrets=secrets)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL for the session. Do not stop it: use ``postgres_factory``."""
    server = PostgresServer(find_binaries())
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL (its URL)."""
    return postgres_server.create_database(f"t{uuid.uuid4().hex[:16]}")


@pytest.fixture
def postgres_factory() -> Iterator[Callable[[], PostgresServer]]:
    """Starts dedicated PostgreSQL servers (for tests that stop and start them)."""
    servers: list[PostgresServer] = []

    def start() -> PostgresServer:
        server = PostgresServer(find_binaries())
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.remove()
