"""PROXY headers on the implicit FTPS port: read off the raw socket, before TLS.

The header and the ClientHello go out in ONE write, as HAProxy sends them,
so a server that read past the header would lose the handshake. The library
server trusts 127.0.0.1; 127.0.0.2 is an untrusted direct client. Through
HAProxy itself: curl ``ftps://`` via ``send-proxy-v2``.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ftp_cluster import MemoryPathIO, Server, User
from ftp_cluster.shared.users import Permission
from tests.e2e.cluster import config_toml
from tests.e2e.conftest import RunningServer, ServerFactory
from tests.e2e.haproxy import PROXY_HOST, PROXY_SOURCE, free_port_range, running_haproxy
from tests.e2e.test_proxy_headers import v1, v2
from tests.e2e.tls import Certificates
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import wait_for

TIMEOUT = 1.5  # socket_timeout: the whole header must come within it
PASSWORD = "Pw-implicit-proxied-8842"
USER = User("erin", PASSWORD, permissions=(Permission("/", readable=True, writable=True),))
CLIENT = "127.0.0.6"  # curl's address behind HAProxy


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    directory = tmp_path / "certs"
    directory.mkdir()
    return Certificates.make(directory)


def implicit_server(certs: Certificates, **options: Any) -> Server:
    options.setdefault("socket_timeout", TIMEOUT)
    options.setdefault("trusted_proxies", ["127.0.0.1/32"])
    return Server(
        [USER],
        MemoryPathIO,
        proxy_protocol=True,
        **certs.server_options(tls_implicit_port=0, **options),
    )


def implicit_port(running: RunningServer) -> int:
    port: int = running.server.sockets[1].getsockname()[1]
    return port


class TLSRaw:
    """An implicit FTPS control connection made by hand: ``prefix`` + ClientHello at once."""

    def __init__(self, port: int, certs: Certificates, prefix: bytes, source: str) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0)
        )
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = certs.client_context().wrap_bio(
            self._in, self._out, server_hostname="127.0.0.1"
        )
        self._buffer = b""
        self._handshake(prefix)

    def _handshake(self, prefix: bytes) -> None:
        pending = prefix
        while True:
            try:
                self._tls.do_handshake()
                self.sock.sendall(self._out.read())
                return
            except ssl.SSLWantReadError:
                self.sock.sendall(pending + self._out.read())
                pending = b""
                self._fill()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed during the TLS handshake")
        self._in.write(chunk)

    def reply(self) -> str:
        while b"\r\n" not in self._buffer:
            try:
                data = self._tls.read(65536)
            except ssl.SSLWantReadError:
                self._fill()
                continue
            if not data:
                raise ConnectionError(f"closed; unread {self._buffer!r}")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line.decode()

    def command(self, line: str) -> str:
        self._tls.write(line.encode() + b"\r\n")
        self.sock.sendall(self._out.read())
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def plain(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def closed_without_a_byte(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def opened() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for item in made:
        item.close()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("header", [v1, v2], ids=["v1", "v2"])
def test_header_then_handshake_in_one_segment_makes_the_header_address_the_client(
    run_server: ServerFactory,
    certs: Certificates,
    opened: list[Any],
    *,
    header: Any,
    loop: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = run_server(lambda: implicit_server(certs, maximum_connections_per_ip=1), loop=loop)
    port = implicit_port(running)
    caplog.set_level(logging.INFO, logger="ftp_cluster")
    first = TLSRaw(port, certs, header("198.51.100.7"), "127.0.0.1")
    opened.append(first)
    assert first.reply().startswith("220")
    assert first.command(f"USER {USER.login}").startswith("331")
    assert first.command(f"PASS {PASSWORD}").startswith("230")
    # maximum_connections_per_ip = 1, counted by the header's address, not the proxy's.
    again = TLSRaw(port, certs, header("198.51.100.7"), "127.0.0.1")
    opened.append(again)
    assert again.reply().startswith("421")
    other = TLSRaw(port, certs, header("198.51.100.8"), "127.0.0.1")
    opened.append(other)
    assert other.reply().startswith("220")
    # Bounce protection knows the client behind the proxy.
    assert first.command("EPRT |1|198.51.100.7|40001|").startswith("200")
    assert first.command("PORT 127,0,0,1,156,65").startswith("5")
    clients = [getattr(r, "fields", {}).get("client_ip") for r in caplog.records]
    assert "198.51.100.7" in clients and "198.51.100.8" in clients
    assert "127.0.0.1" not in clients


def test_untrusted_peer_is_a_direct_client_on_the_implicit_port(
    run_server: ServerFactory, certs: Certificates, opened: list[Any]
) -> None:
    running = run_server(lambda: implicit_server(certs, maximum_connections_per_ip=1))
    port = implicit_port(running)
    direct = TLSRaw(port, certs, b"", "127.0.0.2")  # no header, none expected
    opened.append(direct)
    assert direct.reply().startswith("220")
    assert direct.command("EPRT |1|127.0.0.2|40001|").startswith("5")  # not logged in yet
    assert direct.command(f"USER {USER.login}").startswith("331")
    assert direct.command(f"PASS {PASSWORD}").startswith("230")
    assert direct.command("EPRT |1|127.0.0.2|40001|").startswith("200")


@pytest.mark.parametrize(
    "prefix",
    [b"GET / HTTP/1.0\r\n\r\n", b"PROXY TCP4 1.2.3.4 127.0.0.1 1 2 3 4 5\r\n", b"\x16\x03\x01"],
    ids=["http", "bad-v1", "tls-without-header"],
)
def test_bad_header_on_the_implicit_port_is_closed_before_any_tls(
    run_server: ServerFactory, certs: Certificates, opened: list[Any], prefix: bytes
) -> None:
    running = run_server(lambda: implicit_server(certs))
    port = implicit_port(running)
    sock = plain(port)
    opened.append(sock)
    sock.sendall(prefix)
    started = time.monotonic()
    assert closed_without_a_byte(sock)  # no ServerHello, no greeting
    assert time.monotonic() - started < TIMEOUT + 2
    # Others are served all the same.
    good = TLSRaw(port, certs, v1("198.51.100.9"), "127.0.0.1")
    opened.append(good)
    assert good.reply().startswith("220")


def test_slow_header_on_the_implicit_port_is_closed_within_socket_timeout(
    run_server: ServerFactory, certs: Certificates, opened: list[Any]
) -> None:
    running = run_server(lambda: implicit_server(certs))
    port = implicit_port(running)
    sock = plain(port)
    opened.append(sock)
    sock.sendall(b"PROXY TCP4 198.51")
    started = time.monotonic()
    assert closed_without_a_byte(sock)
    assert TIMEOUT - 0.2 < time.monotonic() - started < TIMEOUT + 3


def test_a_header_still_to_come_is_dropped_by_close(
    run_server: ServerFactory, certs: Certificates, opened: list[Any]
) -> None:
    running = run_server(lambda: implicit_server(certs, socket_timeout=30))
    port = implicit_port(running)
    sock = plain(port)
    opened.append(sock)
    sock.sendall(b"PROXY TCP4 ")
    time.sleep(0.2)  # the header read has begun
    started = time.monotonic()
    running.call(running.server.drain(5))
    assert closed_without_a_byte(sock)
    assert time.monotonic() - started < 3  # not the 30 s header timeout


def test_a_banned_client_behind_the_proxy_is_refused_on_the_implicit_port(
    run_server: ServerFactory,
    certs: Certificates,
    opened: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = run_server(lambda: implicit_server(certs))
    port = implicit_port(running)
    running.call(running.server.limits.bans.ban("198.51.100.66", 60))
    caplog.set_level(logging.INFO, logger="ftp_cluster")
    sock = plain(port)
    opened.append(sock)
    sock.sendall(v2("198.51.100.66"))
    assert closed_without_a_byte(sock)  # before TLS: a plaintext 421 would be noise
    refused = [r for r in caplog.records if getattr(r, "event", "") == "refused"]
    assert [r.fields["client_ip"] for r in refused] == ["198.51.100.66"]  # type: ignore[attr-defined]
    # The proxy itself and other clients behind it are not banned.
    other = TLSRaw(port, certs, v2("198.51.100.67"), "127.0.0.1")
    opened.append(other)
    assert other.reply().startswith("220")


def test_curl_implicit_ftps_through_haproxy_send_proxy_v2(
    run_server: ServerFactory, certs: Certificates, tmp_path: Path
) -> None:
    passive = free_port_range(4)
    running = run_server(
        lambda: implicit_server(
            certs,
            trusted_proxies=[f"{PROXY_SOURCE}/32"],
            masquerade_address=PROXY_HOST,
            data_ports=passive,
            maximum_connections_per_ip=2,
            socket_timeout=10,
        )
    )
    payload = bytes(range(256)) * 1024
    source = tmp_path / "up.bin"
    source.write_bytes(payload)
    with running_haproxy(tmp_path, implicit_port(running), passive) as proxy:
        # The certificate names localhost: curl is pointed at HAProxy under that name.
        hop = f"localhost:{proxy.v2_port}:{PROXY_HOST}:{proxy.v2_port}"
        common = ["curl", "-sS", "--fail", "--max-time", "30", "--interface", CLIENT]
        common += ["--cacert", str(certs.ca_file), "--connect-to", hop]
        url = f"ftps://{USER.login}:{PASSWORD}@localhost:{proxy.v2_port}/c.bin"
        subprocess.run([*common, "-T", str(source), url], check=True, timeout=40)
        back = tmp_path / "down.bin"
        subprocess.run([*common, "-o", str(back), url], check=True, timeout=40)
    assert back.read_bytes() == payload


@pytest.mark.slow
@pytest.mark.usefixtures("no_orphans")
def test_cluster_workers_read_headers_on_the_implicit_port_and_stop_gracefully(
    start_cluster: StartCluster, certs: Certificates, opened: list[Any]
) -> None:
    config = config_toml(
        {"proxy_protocol": True, "trusted_proxies": ["127.0.0.1/32"], "socket_timeout": 30},
        tls={"certificate": str(certs.chain), "private_key": str(certs.key), "implicit_port": 0},
        users=[{"login": "erin", "password": PASSWORD}],
    )
    cluster = start_cluster(workers=2, config=config)
    address = cluster.status()["implicit_address"]
    port = int(address.rsplit(":", 1)[1].rstrip("/"))
    for number in range(4):  # both workers, whichever each lands on
        raw = TLSRaw(port, certs, v2(f"198.51.100.{20 + number}"), "127.0.0.1")
        opened.append(raw)
        assert raw.reply().startswith("220")
        assert raw.command(f"USER {USER.login}").startswith("331")
        assert raw.command(f"PASS {PASSWORD}").startswith("230")
        raw.close()
    # Logged with the header's address (a worker's lines reach the file soon after).
    wait_for(lambda: "198.51.100.23" in cluster.log(), timeout=5, interval=0.1)
    waiting = plain(port)  # a header still to come does not hold up the stop
    opened.append(waiting)
    waiting.sendall(b"PROXY TCP4 ")
    time.sleep(0.2)
    started = time.monotonic()
    cluster.send(signal.SIGTERM)
    assert cluster.wait(timeout=20) == 0
    assert closed_without_a_byte(waiting)
    assert time.monotonic() - started < 15  # well before the 30 s header timeout
    assert "closing took over" not in cluster.log()  # dropped, not waited for
