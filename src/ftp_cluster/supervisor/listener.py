"""Serving the supervisor's own listening sockets (control, metrics) from its loop.

The supervisor's loop is single-threaded and selects on these sockets beside
its signal pipe: a socket that turns readable has connections waiting, and
each is served to the end, one after the other, before the loop goes on.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

__all__ = ["serve_waiting"]


def serve_waiting(sock: socket.socket, serve: Callable[[socket.socket], None]) -> None:
    """Accept every connection waiting on the non-blocking ``sock`` and ``serve`` it.

    Each connection is closed once ``serve`` returns; the call ends when no
    connection is left waiting.
    """
    while True:
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        with conn:
            serve(conn)
