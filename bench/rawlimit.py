"""The physical limit: raw loopback ``os.sendfile`` of the same file into the same receiver.

A sender process (no FTP, no event loop) accepts a connection and sendfile()s
the whole file; the harness receives it with :func:`bench.receiver.receive`,
exactly as it receives a RETR. What no FTP server on this machine can beat.

Run as a program (``python -m bench.rawlimit FILE``) it is the sender.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import time
from pathlib import Path

from bench.peers.base import Running, launch
from bench.receiver import receive

__all__ = ["measure_once", "start_sender"]

_READY = re.compile(r"raw sender listening on 127\.0\.0\.1:(\d+)")


async def start_sender(path: Path, workdir: Path) -> Running:
    """Start the sender process for ``path``."""
    argv = [sys.executable, "-m", "bench.rawlimit", str(path)]
    process, match, log = await launch(argv, workdir, _READY, name="raw-sendfile")
    return Running("127.0.0.1", int(match.group(1)), process, log)


async def measure_once(sender: Running, size: int, timeout: float) -> float:
    """One transfer of the whole file; returns bytes per second."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    async with asyncio.timeout(timeout):
        started = time.perf_counter()
        try:
            await loop.sock_connect(sock, (sender.host, sender.port))
        except BaseException:
            sock.close()
            raise
        received = await receive(sock)
        elapsed = time.perf_counter() - started
    if received != size:
        raise ConnectionError(f"raw sendfile moved {received} of {size} bytes")
    return received / elapsed


def _serve(path: str) -> None:
    size = os.path.getsize(path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        print(f"raw sender listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
        fd = os.open(path, os.O_RDONLY)
        for _ in range(100_000):  # the harness stops this process with SIGTERM long before
            connection, _ = listener.accept()
            with connection:
                offset = 0
                while offset < size:
                    sent = os.sendfile(connection.fileno(), fd, offset, size - offset)
                    if sent == 0:
                        break
                    offset += sent


if __name__ == "__main__":
    _serve(sys.argv[1])
