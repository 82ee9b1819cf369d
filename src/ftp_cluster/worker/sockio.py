"""Readiness-driven bulk I/O on non-blocking data sockets.

``loop.sock_recv_into`` and friends pay for a future and a reader
registration every time a call would block; with hundreds of concurrent
transfers that is most calls. Here the system call runs inside the
readiness callback itself, so one wait covers a whole chunk (as many
``sendfile``/``recv_into`` calls as it takes), and a chunk that the socket
can take at once costs no wait at all.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

__all__ = ["fill", "sendfile"]

Progress = Callable[[int], None]


async def sendfile(
    sock: socket.socket,
    fd: int,
    offset: int,
    count: int,
    moved: Progress,
    *,
    turn: Callable[[], int] | None = None,
) -> int:
    """Send up to ``count`` bytes of ``fd`` from ``offset``; fewer only at end of file.

    ``turn()``, if given, caps the bytes sent per readiness event, so that
    many concurrent downloads take turns instead of each filling its socket
    buffer at once.
    """
    out = sock.fileno()
    done = 0
    finished = False

    def step() -> bool:
        """Send what the socket takes now; True when the chunk or the file is done."""
        nonlocal done, finished
        budget = count if turn is None else turn()
        while done < count:
            if budget <= 0:
                return False  # the loop calls again while the socket is writable
            try:
                sent = os.sendfile(out, fd, offset + done, min(count - done, budget))
            except BlockingIOError:
                return False
            if sent == 0:
                break
            done += sent
            budget -= sent
            moved(sent)
        finished = True
        return True

    if not step():
        await _drive(asyncio.get_running_loop(), out, step, writer=True)
    return done


async def fill(sock: socket.socket, buffer: memoryview, moved: Progress) -> tuple[int, bool]:
    """Receive into ``buffer`` until it is full or the peer is done: ``(filled, at_eof)``."""
    filled = 0
    eof = False

    def step() -> bool:
        nonlocal filled, eof
        while filled < len(buffer):
            try:
                received = sock.recv_into(buffer[filled:])
            except BlockingIOError:
                # Keep filling: one large write beats many small ones, and
                # each hand-over costs a coroutine step in the transfer.
                return False
            if received == 0:
                eof = True
                return True
            filled += received
            moved(received)
        return True

    if not step():
        await _drive(asyncio.get_running_loop(), sock.fileno(), step, writer=False)
    return filled, eof


async def _drive(
    loop: asyncio.AbstractEventLoop, fd: int, step: Callable[[], bool], *, writer: bool
) -> None:
    """Run ``step`` on every readiness event of ``fd`` until it returns True."""
    future: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if future.done():
            return
        try:
            if step():
                future.set_result(None)
        except OSError as error:
            future.set_exception(error)

    if writer:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await future
    finally:
        if writer:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)
