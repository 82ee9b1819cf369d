"""The receiving end shared by FTP data connections and the raw sendfile limit.

Both measurements must read through the very same code, so that the ratio
"FTP throughput / raw throughput" compares servers and not receivers. Reads go
into one preallocated 1 MiB buffer per process (the data is discarded, and a
single-threaded event loop never has two reads in flight at once), via
``BufferedProtocol`` so the loop calls ``recv_into`` directly with no copy and
no per-read future.
"""

from __future__ import annotations

import asyncio
import socket
import time

__all__ = ["RECV_BUFFER_SIZE", "Meter", "Receiver", "receive", "shared_buffer"]

RECV_BUFFER_SIZE = 1 << 20

_buffer: memoryview | None = None


def shared_buffer() -> memoryview:
    """The process's one receive buffer (the data is discarded; FTPS decrypts into it too)."""
    global _buffer  # noqa: PLW0603 - one buffer per process, allocated on first use
    if _buffer is None:
        _buffer = memoryview(bytearray(RECV_BUFFER_SIZE))
    return _buffer


class Meter:
    """Bytes received, summed into fixed time slots for rate-over-time charts.

    Slots are indexed by ``time.monotonic() / slot``: CLOCK_MONOTONIC is
    system-wide on Linux, so meters of several client processes merge by index.
    """

    def __init__(self, slot: float = 0.25) -> None:
        self.slot = slot
        self.slots: dict[int, int] = {}

    def add(self, nbytes: int) -> None:
        index = int(time.monotonic() / self.slot)
        self.slots[index] = self.slots.get(index, 0) + nbytes


class Receiver(asyncio.BufferedProtocol):
    """Counts the bytes of one data connection until the peer closes it."""

    def __init__(self, meter: Meter | None = None) -> None:
        self.received = 0
        self._meter = meter
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> memoryview:
        return shared_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.received += nbytes
        if self._meter is not None:
            self._meter.add(nbytes)

    def eof_received(self) -> bool:
        return False  # close our side too: the transfer is complete

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(self.received)
        else:
            self.done.set_exception(exc)


async def receive(sock: socket.socket, meter: Meter | None = None) -> int:
    """Read a connected socket to EOF and return the byte count; the socket is consumed."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(lambda: Receiver(meter), sock=sock)
    try:
        return await protocol.done
    finally:
        transport.close()
