"""PROXY headers on raw sockets: whose address counts, bad headers, passive data.

The library server trusts 127.0.0.1 as its proxy; these tests are that proxy,
writing headers by hand (good, bad, slow) from real sockets. 127.0.0.2 is an
untrusted direct client. HAProxy itself is in test_proxy_haproxy.py.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ftp_cluster import MemoryPathIO, Server, User
from ftp_cluster.shared.users import Permission
from ftp_cluster.worker.protocol.proxy_header import V2_SIGNATURE
from tests.e2e.conftest import RunningServer, ServerFactory

TIMEOUT = 1.5  # socket_timeout: the whole header must come within it
PASSWORD = "Pw-proxied-5521"
USER = User("carol", PASSWORD, permissions=(Permission("/", readable=True, writable=True),))


def proxied_server(**options: Any) -> Server:
    options.setdefault("socket_timeout", TIMEOUT)
    return Server(
        [USER], MemoryPathIO, proxy_protocol=True, trusted_proxies=["127.0.0.1/32"], **options
    )


def v1(client: str, port: int = 40000) -> bytes:
    return f"PROXY TCP4 {client} 127.0.0.1 {port} 21\r\n".encode()


def v2(client: str, *, command: int = 1, tlvs: bytes = b"") -> bytes:
    body = socket.inet_aton(client) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 4, 21)
    body += tlvs
    return V2_SIGNATURE + bytes([0x20 | command, 0x11]) + struct.pack("!H", len(body)) + body


class Raw:
    """A control connection made by hand, from ``source``."""

    def __init__(self, server: RunningServer, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(
            (server.host, server.port), timeout=10, source_address=(source, 0)
        )
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        """One reply line (the final line of a multi-line reply)."""
        while True:
            while b"\r\n" not in self._buffer:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError(f"closed; unread {self._buffer!r}")
                self._buffer += chunk
            line, _, self._buffer = self._buffer.partition(b"\r\n")
            text = line.decode()
            if text[3:4] != "-":
                return text

    def command(self, line: str) -> str:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def login(self) -> None:
        assert self.command(f"USER {USER.login}").startswith("331")
        assert self.command(f"PASS {PASSWORD}").startswith("230")

    def closed_silently(self) -> bool:
        """Whether the server closes without a byte (no greeting)."""
        try:
            return self.sock.recv(4096) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(run_server: ServerFactory) -> RunningServer:
    return run_server(lambda: proxied_server(maximum_connections_per_ip=1))


@pytest.fixture
def raws() -> Iterator[list[Raw]]:
    made: list[Raw] = []
    yield made
    for raw in made:
        raw.close()


@pytest.mark.parametrize("header", [v1, v2], ids=["v1", "v2"])
def test_header_address_is_the_client_for_limits_and_bounce_checks(
    server: RunningServer, raws: list[Raw], header: Any
) -> None:
    first = Raw(server)
    raws.append(first)
    first.send(header("198.51.100.7"))
    assert first.reply().startswith("220")
    # maximum_connections_per_ip = 1, counted by the header's address, not the proxy's.
    again = Raw(server)
    raws.append(again)
    again.send(header("198.51.100.7"))
    assert again.reply().startswith("421")
    other = Raw(server)
    raws.append(other)
    other.send(header("198.51.100.8"))
    assert other.reply().startswith("220")
    # Bounce protection: PORT may name the client, not the proxy it came through.
    first.login()
    assert first.command("EPRT |1|198.51.100.7|40001|").startswith("200")
    assert first.command("PORT 127,0,0,1,156,65").startswith("5")


def test_local_header_is_the_proxys_own_connection(server: RunningServer, raws: list[Raw]) -> None:
    raw = Raw(server)
    raws.append(raw)
    raw.send(v2("0.0.0.0", command=0))
    assert raw.reply().startswith("220")
    raw.login()
    assert raw.command("PORT 127,0,0,1,156,65").startswith("200")  # the peer is 127.0.0.1


def test_untrusted_peer_is_direct_and_its_header_a_bad_command(
    server: RunningServer, raws: list[Raw]
) -> None:
    raw = Raw(server, source="127.0.0.2")
    raws.append(raw)
    assert raw.reply().startswith("220")  # greeted at once: no header expected
    assert raw.command(v1("198.51.100.7").decode().strip()).startswith("5")
    raw.login()
    assert raw.command("EPRT |1|198.51.100.7|40001|").startswith("5")  # not believed
    assert raw.command("EPRT |1|127.0.0.2|40001|").startswith("200")


BAD_HEADERS = {
    "wrong signature": b"USER carol\r\n",
    "v1 too long": b"PROXY TCP4 " + b"1" * 120 + b"\r\n",
    "v1 bad address": b"PROXY TCP4 300.1.1.1 127.0.0.1 1 2\r\n",
    "v2 oversized": V2_SIGNATURE + b"\x21\x11\xff\xff" + b"\0" * 64,
    "v2 garbage TLVs": v2("198.51.100.7", tlvs=b"\x05\x00\x30garbage"),
    "v2 bad CRC32C": v2("198.51.100.7", tlvs=b"\x03\x00\x04\xde\xad\xbe\xef"),
    "v2 bad version": V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\0" * 12,
}


@pytest.mark.parametrize("data", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_bad_header_is_closed_at_once_without_a_greeting(
    server: RunningServer, raws: list[Raw], data: bytes
) -> None:
    raw = Raw(server)
    raws.append(raw)
    started = time.monotonic()
    raw.send(data)
    assert raw.closed_silently()
    assert time.monotonic() - started < TIMEOUT  # refused on sight, not by the timer


def test_truncated_and_slow_loris_headers_are_closed_within_socket_timeout(
    server: RunningServer, raws: list[Raw]
) -> None:
    truncated = Raw(server)
    raws.append(truncated)
    truncated.send(v2("198.51.100.7")[:20])
    silent = Raw(server)
    raws.append(silent)
    loris = Raw(server)
    raws.append(loris)
    started = time.monotonic()
    stop = threading.Event()

    def dribble() -> None:
        # One byte of a valid v1 header every 0.1 s: the header would take 4 s.
        for byte in v1("198.51.100.9"):
            if stop.wait(0.1):
                return
            try:
                loris.send(bytes([byte]))
            except OSError:
                return

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        # Meanwhile a good session is served as usual.
        good = Raw(server)
        raws.append(good)
        good.send(v1("198.51.100.10"))
        assert good.reply().startswith("220")
        good.login()
        assert good.command("NOOP").startswith("200")
        for raw in (truncated, silent, loris):
            assert raw.closed_silently()
        elapsed = time.monotonic() - started
        assert TIMEOUT * 0.8 <= elapsed < TIMEOUT + 1.5
        assert good.command("NOOP").startswith("200")
    finally:
        stop.set()
        thread.join(5)


def test_passive_data_through_the_proxy_is_checked_by_its_header(
    run_server: ServerFactory, raws: list[Raw]
) -> None:
    server = run_server(proxied_server)
    control = Raw(server)
    raws.append(control)
    control.send(v1("127.0.0.9"))
    assert control.reply().startswith("220")
    control.login()

    def passive() -> int:
        reply = control.command("EPSV")
        assert reply.startswith("229"), reply
        return int(reply.split("|")[3])

    def data(port: int, source: str, header: bytes = b"") -> socket.socket:
        sock = socket.create_connection((server.host, port), timeout=10, source_address=(source, 0))
        if header:
            sock.sendall(header)
        return sock

    def refused(sock: socket.socket) -> bool:
        try:
            return sock.recv(1) == b""
        except ConnectionResetError:
            return True
        finally:
            sock.close()

    port = passive()
    # Through the proxy for another client, direct from a stranger, a bad header.
    assert refused(data(port, "127.0.0.1", v1("127.0.0.8")))
    assert refused(data(port, "127.0.0.2"))
    assert refused(data(port, "127.0.0.1", b"PROXY TCP4 nonsense\r\n"))
    # The client's, through the proxy: the header and the upload in one segment.
    payload = bytes(range(256)) * 1000
    upload = data(port, "127.0.0.1", v1("127.0.0.9") + payload)
    upload.shutdown(socket.SHUT_WR)
    assert control.command("STOR f").startswith("150")
    assert control.reply().startswith("226")
    upload.close()
    # Downloads: through the proxy with v2, and direct from the client itself.
    for source, header in (("127.0.0.1", v2("127.0.0.9")), ("127.0.0.9", b"")):
        port = passive()
        download = data(port, source, header)
        assert control.command("RETR f").startswith("150")
        received = bytearray()
        while chunk := download.recv(65536):
            received += chunk
        download.close()
        assert control.reply().startswith("226")
        assert bytes(received) == payload


def test_a_refused_header_leaves_no_timer_behind(
    run_server: ServerFactory, raws: list[Raw], caplog: pytest.LogCaptureFixture
) -> None:
    server = run_server(lambda: proxied_server(socket_timeout=0.3))
    raw = Raw(server)
    raws.append(raw)
    raw.send(b"USER carol\r\n")
    assert raw.closed_silently()
    time.sleep(0.6)  # past the header timeout: a leftover timer would have fired
    messages = [record.getMessage() for record in caplog.records]
    assert any("bad PROXY header" in m for m in messages), messages
    assert not any("no PROXY header in time" in m for m in messages), messages
