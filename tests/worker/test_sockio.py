"""Readiness-driven bulk I/O: what moves per readiness event, and that it all arrives."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from ftp_cluster.worker import sockio

SIZE = 2 * 1024 * 1024


@pytest.fixture
def source() -> Iterator[int]:
    with tempfile.TemporaryFile() as file:
        file.write(os.urandom(SIZE))
        file.flush()
        yield file.fileno()


def _download(fd: int) -> tuple[bytes, list[int]]:
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
            sent = await sockio.sendfile(sender, fd, 0, SIZE, moved)
            assert sent == SIZE
        finally:
            done.set_result(None)
            sender.close()
        data = await received
        receiver.close()
        return data, [n for n in per_turn if n]

    return uvloop.run(scenario())


def test_a_readiness_event_sends_all_the_socket_takes(source: int) -> None:
    data, per_turn = _download(source)
    assert data == os.pread(source, SIZE, 0)
    assert max(per_turn) > 64 * 1024
    assert sum(per_turn) == SIZE


def _upload(
    chunks: list[bytes], limit: int, target: int, pipe: sockio.Pipe
) -> list[tuple[int, bool]]:
    """Send ``chunks`` then EOF into a socket; splice it all into ``target``: each call's result."""

    async def scenario() -> list[tuple[int, bool]]:
        loop = asyncio.get_running_loop()
        receiver, sender = socket.socketpair()
        receiver.setblocking(False)

        def send() -> None:
            for chunk in chunks:
                sender.sendall(chunk)
            sender.shutdown(socket.SHUT_WR)

        sending = loop.run_in_executor(None, send)
        results: list[tuple[int, bool]] = []
        try:
            for _ in range(10_000):  # bounded: each call moves something or ends
                result = await sockio.splice(receiver, pipe, target, limit, lambda _: None)
                results.append(result)
                assert result[0] <= limit
                if result[1]:
                    break
        finally:
            await sending
            receiver.close()
            sender.close()
        return results

    return uvloop.run(scenario())


@pytest.mark.skipif(not sockio.CAN_SPLICE, reason="os.splice is Linux only")
def test_splice_moves_a_stream_into_a_file_and_sees_its_end(tmp_path: Path) -> None:
    chunks = [os.urandom(n) for n in (1, 70_000, 3 * 1024 * 1024, 5)]
    pipe = sockio.Pipe()
    fd = os.open(tmp_path / "up", os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, b"head")  # splices go on from the file's position
        results = _upload(chunks, 256 * 1024, fd, pipe)
    finally:
        os.close(fd)
        pipe.close()
    assert (tmp_path / "up").read_bytes() == b"head" + b"".join(chunks)
    assert sum(moved for moved, _ in results) == sum(map(len, chunks))
    # Whole chunks (one throttle payment each) until the end of the stream.
    assert all(moved == 256 * 1024 and not eof for moved, eof in results[:-1])
    assert results[-1][1]


@pytest.mark.skipif(not sockio.CAN_SPLICE, reason="os.splice is Linux only")
def test_a_failed_splice_into_the_file_leaves_the_pipe_clean(tmp_path: Path) -> None:
    pipe = sockio.Pipe()
    broken = os.open(tmp_path / "ro", os.O_RDONLY | os.O_CREAT)  # cannot be written
    fd = os.open(tmp_path / "up", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError):
            _upload([b"lost"], 1024, broken, pipe)
        # The next upload gets only its own bytes, nothing left from the failure.
        _upload([b"kept"], 1024, fd, pipe)
    finally:
        os.close(broken)
        os.close(fd)
        pipe.close()
    assert (tmp_path / "up").read_bytes() == b"kept"
