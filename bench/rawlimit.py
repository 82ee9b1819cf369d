"""The physical limit: raw loopback ``os.sendfile`` of the same file into the same receiver.

A sender process (no FTP, no event loop) accepts a connection and sendfile()s
the whole file; the harness receives it with :func:`bench.receiver.receive`,
exactly as it receives a RETR. What no FTP server on this machine can beat.

With a certificate it is the FTPS limit instead: the sender encrypts the file
with OpenSSL (``SSLSocket.send`` from a mapping of it, 256 KiB per call, no
event loop) and the harness decrypts it with :class:`bench.ftps.ProtectedData`,
exactly as it receives an FTPS RETR.

Run as a program (``python -m bench.rawlimit FILE [CERT KEY]``) it is the sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import re
import socket
import ssl
import sys
import time
from pathlib import Path

from bench.ftps import ProtectedData, client_context
from bench.peers.base import Running, TLSFiles, launch
from bench.receiver import receive

__all__ = ["measure_once", "start_sender"]

_READY = re.compile(r"raw sender listening on 127\.0\.0\.1:(\d+)")


async def start_sender(path: Path, workdir: Path, tls: TLSFiles | None = None) -> Running:
    """Start the sender process for ``path`` (with ``tls``: the TLS sender)."""
    argv = [sys.executable, "-m", "bench.rawlimit", str(path)]
    if tls is not None:
        argv += [str(tls.certificate), str(tls.private_key)]
    name = "raw-sendfile" if tls is None else "raw-tls"
    process, match, log = await launch(argv, workdir, _READY, name=name)
    running = Running("127.0.0.1", int(match.group(1)), process, log)
    running.tls_ca = None if tls is None else tls.certificate
    return running


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
        if sender.tls_ca is None:
            received = await receive(sock)
        else:
            data = ProtectedData(sock, client_context(str(sender.tls_ca)), sender.host, None)
            try:
                await data.handshake()
                received = await data.receive()
            finally:
                data.close()
        elapsed = time.perf_counter() - started
    if received != size:
        raise ConnectionError(f"raw sendfile moved {received} of {size} bytes")
    return received / elapsed


def _send_tls(connection: socket.socket, context: ssl.SSLContext, fd: int, size: int) -> None:
    with (
        context.wrap_socket(connection, server_side=True) as tls,
        mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped,
    ):
        offset = 0
        while offset < size:
            with memoryview(mapped)[offset : offset + (256 << 10)] as chunk:
                offset += tls.send(chunk)
        # close_notify, as an FTPS server ends a download; the receiver may close first.
        with contextlib.suppress(ssl.SSLError, OSError):
            tls.unwrap()


def _serve(path: str, tls: tuple[str, str] | None) -> None:
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
    size = os.path.getsize(path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        print(f"raw sender listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
        fd = os.open(path, os.O_RDONLY)
        for _ in range(100_000):  # the harness stops this process with SIGTERM long before
            connection, _ = listener.accept()
            if context is not None:
                # A failed send: the harness gave up on this one, its timeout says so.
                with contextlib.suppress(ssl.SSLError, OSError):
                    _send_tls(connection, context, fd, size)
                continue
            with connection:
                offset = 0
                while offset < size:
                    sent = os.sendfile(connection.fileno(), fd, offset, size - offset)
                    if sent == 0:
                        break
                    offset += sent


if __name__ == "__main__":
    _serve(sys.argv[1], (sys.argv[2], sys.argv[3]) if len(sys.argv) == 4 else None)
