"""A real HAProxy in front of a server, started by the test on loopback.

Topology (one HAProxy process, mode tcp)::

    client (127.0.0.1 or a source it binds)
      -> 127.0.0.3:v1_port  --send-proxy-->     server 127.0.0.1:<ftp port>
      -> 127.0.0.3:v2_port  --send-proxy-v2-->  server 127.0.0.1:<ftp port>
      -> 127.0.0.3:<passive range> --send-proxy-v2--> server 127.0.0.1:<same port>

HAProxy connects to the server from 127.0.0.4 (``source``), the one trusted
proxy address, so the client's address in the header differs from the
proxy's. The server announces 127.0.0.3 in PASV (``masquerade_address``), so
passive data goes through the third frontend, which binds the server's
passive port range on HAProxy's address and forwards each port to the same
port of the server (a ``server`` line without a port).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PROXY_HOST", "PROXY_SOURCE", "HAProxy", "free_port_range", "haproxy_binary"]

PROXY_HOST = "127.0.0.3"  # where HAProxy listens (and what PASV announces)
PROXY_SOURCE = "127.0.0.4"  # where HAProxy connects to the server from: the trusted proxy


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found is None:
        pytest.fail("haproxy is not installed (Debian package 'haproxy'; .ci/run installs it)")
    return found


def _free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port_range(count: int, hosts: tuple[str, ...] = ("127.0.0.1", PROXY_HOST)) -> range:
    """``count`` consecutive ports free on every one of ``hosts``."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            low = probe.getsockname()[1]
        ports = range(low, low + count)
        if ports.stop < 65536 and all(_free(h, p) for h in hosts for p in ports):
            return ports
    raise RuntimeError("no free port range")


class HAProxy:
    """One haproxy process with a v1 control, a v2 control and a v2 data frontend."""

    def __init__(self, directory: Path, ftp_port: int, passive: range) -> None:
        self.directory = directory
        control = free_port_range(2, (PROXY_HOST,))
        self.v1_port, self.v2_port = control[0], control[1]
        self.passive = passive
        self.config = directory / "haproxy.cfg"
        self.config.write_text(
            f"""global
    maxconn 512
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend control_v1
    bind {PROXY_HOST}:{self.v1_port}
    default_backend ftp_v1
frontend control_v2
    bind {PROXY_HOST}:{self.v2_port}
    default_backend ftp_v2
frontend passive
    bind {PROXY_HOST}:{passive.start}-{passive.stop - 1}
    default_backend ftp_data
backend ftp_v1
    server ftp 127.0.0.1:{ftp_port} send-proxy source {PROXY_SOURCE}
backend ftp_v2
    server ftp 127.0.0.1:{ftp_port} send-proxy-v2 source {PROXY_SOURCE}
backend ftp_data
    server ftp 127.0.0.1 send-proxy-v2 source {PROXY_SOURCE}
"""
        )
        self.log = directory / "haproxy.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [haproxy_binary(), "-db", "-f", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_listening()

    def _wait_listening(self) -> None:
        # A bind that fails shows HAProxy's socket; a probe connection would
        # reach the server and count as a session there.
        ports = [self.v1_port, self.v2_port, self.passive.start, self.passive.stop - 1]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.log.read_text()}")
            if not any(_free(PROXY_HOST, port) for port in ports):
                return
            time.sleep(0.05)
        raise RuntimeError(f"haproxy did not listen: {self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@contextlib.contextmanager
def running_haproxy(directory: Path, ftp_port: int, passive: range) -> Iterator[HAProxy]:
    proxy = HAProxy(directory, ftp_port, passive)
    try:
        yield proxy
    finally:
        proxy.stop()
