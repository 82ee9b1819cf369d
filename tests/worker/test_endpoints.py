"""Data connections on real loopback sockets: how much a transfer may queue unsent.

(Stolen and bounced data connections are refused end to end, in
tests/e2e/test_library_transfers.py.)
"""

from __future__ import annotations

import socket

import pytest
import uvloop

from ftp_cluster.worker.endpoints import (
    NOTSENT_LOWAT,
    PassiveListener,
    PortPool,
    connect_active,
)

IP = "127.0.0.1"
# A socket with the default settings queues megabytes (its whole send buffer)
# before it stops taking data; one with a small unsent queue takes what the
# peer's receive window holds plus NOTSENT_LOWAT.
_SMALL_QUEUE = 1024 * 1024

needs_lowat = pytest.mark.skipif(
    not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="TCP_NOTSENT_LOWAT is Linux/macOS only"
)


def _queued_before_full(sock: socket.socket) -> int:
    """Bytes a non-blocking ``sock`` takes while its peer reads nothing."""
    chunk = bytes(256 * 1024)
    taken = 0
    while taken < 64 * 1024 * 1024:
        try:
            taken += sock.send(chunk)
        except BlockingIOError:
            return taken
    raise AssertionError("the socket never filled up")


async def _passive_pair() -> tuple[socket.socket, socket.socket]:
    """(the server's data socket, the client's)"""
    listener = PassiveListener(PortPool(None).bind(IP), IP)
    client = socket.create_connection((IP, listener.port))
    try:
        return await listener.connection(5.0), client
    except BaseException:
        client.close()
        listener.close()
        raise


@needs_lowat
def test_a_passive_data_connection_keeps_a_small_unsent_queue() -> None:
    async def main() -> None:
        server, client = await _passive_pair()
        with server, client:
            assert not server.getblocking()
            lowat = server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
            assert lowat == NOTSENT_LOWAT
            assert _queued_before_full(server) < _SMALL_QUEUE

    uvloop.run(main())


@needs_lowat
def test_an_active_data_connection_keeps_a_small_unsent_queue() -> None:
    async def main() -> None:
        listener = socket.create_server((IP, 0))
        with listener:
            port = listener.getsockname()[1]
            server = await connect_active(IP, port, IP, 5.0)
            client, _ = listener.accept()
            with server, client:
                assert not server.getblocking()
                assert _queued_before_full(server) < _SMALL_QUEUE

    uvloop.run(main())
