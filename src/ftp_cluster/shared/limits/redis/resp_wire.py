"""Replies read straight off the transport of a connection redis-py set up.

A lease batch is one packed command and one reply. Going through redis-py
for that costs tens of microseconds of Python per round trip (its stream
reader, a future per read, a timeout task), which a worker admitting
thousands of sessions a second pays for every batch. Once redis-py has
connected (TLS, AUTH, SELECT, Sentinel lookup: everything a URL can ask
for), :func:`take_over` moves the connection's transport to a
:class:`RespWire`: a protocol that writes commands to the transport and
parses replies with hiredis as they arrive, each completing a future.

If redis-py's connection does not expose its transport (a future release),
:func:`take_over` returns ``None`` and the caller goes on through redis-py.

redis-py 8 connects with RESP3 unless the URL says ``protocol=2``, and a
RESP3 connection may carry *push* messages (client-side caching
invalidations, Redis Enterprise maintenance notices) that answer no command.
They are dropped here: handed to the oldest waiter, a push would stand in
for its reply, and every reply after it would go to the wrong command.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import hiredis
import redis.exceptions

__all__ = ["RespWire", "take_over"]


class RespWire(asyncio.Protocol):
    """Commands out, replies in, in order; each :meth:`send` gets its reply's future."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._lost: BaseException | None = None

    @property
    def usable(self) -> bool:
        return self._lost is None and not self._transport.is_closing()

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Write one packed command; the future gets its reply (or the error)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._lost is not None:
            future.set_exception(_lost_error(self._lost))
            return future
        self._waiting.append(future)
        self._transport.write(packed)
        return future

    def close(self) -> None:
        """Drop the connection; commands still waiting fail with ConnectionError."""
        self._fail(ConnectionError("connection to Redis dropped"))
        self._transport.close()

    # -- asyncio.Protocol ----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if isinstance(reply, hiredis.PushNotification):
                continue  # out of band: nobody asked for it (see the module docstring)
            if not self._waiting:
                # Nothing asked for it: this connection cannot be trusted.
                self.close()
                return
            future = self._waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_error_reply(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("Redis closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        if self._lost is None:
            self._lost = exc
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(_lost_error(exc))


def take_over(connection: Any) -> RespWire | None:
    """Move a connected redis-py asyncio connection's transport to a new :class:`RespWire`."""
    writer = getattr(connection, "_writer", None)
    transport = getattr(writer, "transport", None)
    # uvloop's transports do not derive from asyncio.Transport: ask for the calls.
    needed = ("set_protocol", "write", "close", "is_closing")
    if transport is None or not all(callable(getattr(transport, n, None)) for n in needed):
        return None
    if transport.is_closing():
        return None
    wire = RespWire(transport)
    transport.set_protocol(wire)
    return wire


def _lost_error(exc: BaseException) -> BaseException:
    if isinstance(exc, ConnectionError | redis.exceptions.ConnectionError):
        return exc
    return ConnectionError(f"connection to Redis lost: {exc}")


def _error_reply(message: str) -> redis.exceptions.RedisError:
    # The redis-py error classes the limits backend (NOSCRIPT) and a cluster
    # client (redirections, a cluster changing) tell apart.
    code, _, rest = message.partition(" ")
    if code == "NOSCRIPT":
        return redis.exceptions.NoScriptError(message)
    cluster_error = _CLUSTER_ERRORS.get(code)
    if cluster_error is not None:
        return cluster_error(rest)
    return redis.exceptions.ResponseError(message)


_CLUSTER_ERRORS: dict[str, type[redis.exceptions.ResponseError]] = {
    "MOVED": redis.exceptions.MovedError,
    "ASK": redis.exceptions.AskError,
    "TRYAGAIN": redis.exceptions.TryAgainError,
    "CLUSTERDOWN": redis.exceptions.ClusterDownError,
}
