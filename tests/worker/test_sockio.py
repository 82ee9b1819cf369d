"""Readiness-driven bulk I/O: what moves per readiness event, and that it all arrives."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import Iterator

import pytest
import uvloop

from ftp_cluster.worker import sockio
from ftp_cluster.worker.transfer import Counters

SIZE = 2 * 1024 * 1024


@pytest.fixture
def source() -> Iterator[int]:
    with tempfile.TemporaryFile() as file:
        file.write(os.urandom(SIZE))
        file.flush()
        yield file.fileno()


def _download(fd: int, turn: int | None) -> tuple[bytes, list[int]]:
    """Send ``fd`` over a socket pair; return what arrived and the bytes sent per loop turn."""

    async def scenario() -> tuple[bytes, list[int]]:
        loop = asyncio.get_running_loop()
        sender, receiver = socket.socketpair()
        sender.setblocking(False)
        per_turn = [0]

        def tick() -> None:
            # A new slot for every loop iteration: sends of one iteration add up in one.
            per_turn.append(0)
            if not done.done():
                loop.call_soon(tick)

        def moved(amount: int) -> None:
            per_turn[-1] += amount

        def drain() -> bytes:
            parts = []
            while chunk := receiver.recv(1 << 20):
                parts.append(chunk)
            return b"".join(parts)

        received = loop.run_in_executor(None, drain)
        done: asyncio.Future[None] = loop.create_future()
        loop.call_soon(tick)
        try:
            rule = None if turn is None else (lambda: turn)
            sent = await sockio.sendfile(sender, fd, 0, SIZE, moved, turn=rule)
            assert sent == SIZE
        finally:
            done.set_result(None)
            sender.close()
        data = await received
        receiver.close()
        return data, [n for n in per_turn if n]

    return uvloop.run(scenario())


def test_a_turn_caps_what_one_readiness_event_sends(source: int) -> None:
    data, per_turn = _download(source, turn=16 * 1024)
    assert data == os.pread(source, SIZE, 0)
    # The first slot may also hold the send made inline, before any wait.
    assert max(per_turn[1:]) <= 16 * 1024
    assert sum(per_turn) == SIZE


def test_without_a_turn_a_readiness_event_sends_all_the_socket_takes(source: int) -> None:
    data, per_turn = _download(source, turn=None)
    assert data == os.pread(source, SIZE, 0)
    assert max(per_turn) > 16 * 1024


def test_concurrent_downloads_share_the_turn() -> None:
    counters = Counters()
    lone = counters.turn()
    counters.sending = 300
    assert counters.turn() < lone
    assert counters.turn() >= 64 * 1024  # never so small that system calls dominate
