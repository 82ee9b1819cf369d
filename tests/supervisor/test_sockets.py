"""The slot sockets: one port, SO_REUSEPORT, steering away from a leaving slot."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from ftp_cluster.supervisor.sockets import ListenError, Listeners, queue_is_empty


def _connect_many(port: int, count: int, host: str = "127.0.0.1") -> list[socket.socket]:
    clients = [socket.create_connection((host, port), timeout=5) for _ in range(count)]
    time.sleep(0.05)  # handshakes complete into the accept queues
    return clients


def _accept_all(sock: socket.socket) -> int:
    accepted = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return accepted
        conn.close()
        accepted += 1


@pytest.fixture
def listeners() -> Iterator[Listeners]:
    made = Listeners("127.0.0.1", 0)
    yield made
    made.close()


def test_port_zero_gives_every_slot_the_same_port(listeners: Listeners) -> None:
    for _ in range(3):
        listeners.add()
    ports = {sock.getsockname()[1] for sock in listeners.sockets}
    assert ports == {listeners.port} and listeners.port > 0
    assert all(sock.get_inheritable() and not sock.getblocking() for sock in listeners.sockets)


def test_kernel_spreads_connections_over_the_slots(listeners: Listeners) -> None:
    for _ in range(3):
        listeners.add()
    clients = _connect_many(listeners.port, 90)
    counts = [_accept_all(sock) for sock in listeners.sockets]
    assert sum(counts) == 90
    assert all(count > 0 for count in counts)
    for client in clients:
        client.close()


def test_steering_keeps_new_connections_off_the_top_slot(listeners: Listeners) -> None:
    for _ in range(3):
        listeners.add()
    assert listeners.steer_away_from_top()
    clients = _connect_many(listeners.port, 90)
    counts = [_accept_all(sock) for sock in listeners.sockets]
    assert counts[2] == 0 and sum(counts) == 90
    assert queue_is_empty(listeners.sockets[2])
    listeners.remove_top()
    more = _connect_many(listeners.port, 40)
    counts = [_accept_all(sock) for sock in listeners.sockets]
    assert sum(counts) == 40 and all(count > 0 for count in counts)
    listeners.add()  # steering is gone: the new top slot gets its share again
    again = _connect_many(listeners.port, 90)
    assert _accept_all(listeners.sockets[2]) > 0
    for client in clients + more + again:
        client.close()


def test_queue_is_empty_sees_waiting_connections(listeners: Listeners) -> None:
    sock = listeners.add()
    assert queue_is_empty(sock)
    (client,) = _connect_many(listeners.port, 1)
    assert not queue_is_empty(sock)
    assert _accept_all(sock) == 1
    assert queue_is_empty(sock)
    client.close()


def test_a_port_in_use_is_refused(listeners: Listeners) -> None:
    listeners.add()
    with pytest.raises(ListenError, match="cannot listen"):
        Listeners("127.0.0.1", listeners.port)


def test_unknown_host_is_refused() -> None:
    with pytest.raises(ListenError, match="cannot resolve"):
        Listeners("no-such-host.invalid", 0)


def test_ipv6() -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    listeners = Listeners("::1", 0)
    try:
        for _ in range(2):
            listeners.add()
        assert {s.family for s in listeners.sockets} == {socket.AF_INET6}
        clients = _connect_many(listeners.port, 20, host="::1")
        assert sum(_accept_all(sock) for sock in listeners.sockets) == 20
        for client in clients:
            client.close()
    finally:
        listeners.close()
