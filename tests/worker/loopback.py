"""What the data-channel tests share: a connected loopback TCP pair, a uvloop runner."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from ftp_cluster.shared.limits.local import LocalLimits
from ftp_cluster.worker.throttle import UNLIMITED_CHUNK, Throttle

UNLIMITED = Throttle(LocalLimits(), (), (), UNLIMITED_CHUNK)


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """(server side, non-blocking; client side, blocking) of one loopback connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    server.setblocking(False)
    return server, client


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main()`` on a fresh uvloop loop, as a worker would."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
