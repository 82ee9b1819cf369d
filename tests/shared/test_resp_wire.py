"""The lease channel's own reply reading, on redis-py's connections to a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions
import uvloop

from ftp_cluster.shared.limits.redis.connection import (
    CommandBuffer,
    CommandChannel,
    async_client,
    bulk,
)
from ftp_cluster.shared.limits.redis.resp_wire import RespWire
from tests.conftest import RedisServer

Scenario = Callable[[CommandChannel], Coroutine[Any, Any, None]]


def on_channel(url: str, scenario: Scenario, timeout: float = 0.5) -> None:
    """Run ``scenario`` with a channel to ``url`` on uvloop, as a worker does."""

    async def main() -> None:
        client = async_client(url, timeout=timeout)
        assert isinstance(client.client, redis.asyncio.Redis)
        channel = CommandChannel(client.client, timeout=timeout)
        try:
            await asyncio.wait_for(scenario(channel), 20)
        finally:
            await channel.disconnect()
            await client.aclose()

    uvloop.run(main())


def wire_of(channel: CommandChannel) -> RespWire:
    wire = channel._wire
    assert wire is not None, "the channel did not take the connection over"
    return wire


@pytest.mark.parametrize("address", ["tcp", "unix"])
def test_replies_in_order_and_of_any_size(redis_server: RedisServer, address: str) -> None:
    url = redis_server.url if address == "tcp" else redis_server.unix_url

    async def scenario(channel: CommandChannel) -> None:
        assert await channel.call(CommandBuffer("PING")) == b"PONG"
        wire = wire_of(channel)
        # Many commands in flight at once: each reply goes to its own sender.
        replies = [wire.send(CommandBuffer("ECHO", str(n)).packed()) for n in range(500)]
        assert await asyncio.gather(*replies) == [str(n).encode() for n in range(500)]
        big = "x" * (3 * 1024 * 1024)  # arrives in many pieces
        assert await channel.call(CommandBuffer("ECHO", big)) == big.encode()
        assert await channel.call(CommandBuffer("RPUSH", "wire-list", 1, 2)) >= 2
        # Arguments packed beforehand, several in one piece, as lease batches are.
        command = CommandBuffer("RPUSH", "wire-packed")
        command.add(bulk("é") + bulk(-1) + bulk(70000), 3)
        assert await channel.call(command) == 3
        assert await channel.call(CommandBuffer("LPOP", "wire-packed", 3)) == [
            "é".encode(),
            b"-1",
            b"70000",
        ]

    on_channel(url, scenario)


def test_error_replies_become_redis_py_errors(redis_server: RedisServer) -> None:
    async def scenario(channel: CommandChannel) -> None:
        with pytest.raises(redis.exceptions.NoScriptError):
            await channel.call(CommandBuffer("EVALSHA", "0" * 40, 0))
        with pytest.raises(redis.exceptions.ResponseError):
            await channel.call(CommandBuffer("NO-SUCH-COMMAND"))
        assert await channel.call(CommandBuffer("ECHO", "after")) == b"after"

    on_channel(redis_server.url, scenario)


def test_a_dropped_connection_fails_the_waiting_and_the_next_call_reconnects(
    redis_server: RedisServer,
) -> None:
    async def scenario(channel: CommandChannel) -> None:
        assert await channel.call(CommandBuffer("PING")) == b"PONG"
        first = wire_of(channel)
        redis_server.client().client_kill_filter(_type="normal", skipme=True)
        # The kill reaches us as connection_lost; a call after it reconnects.
        for _ in range(100):
            if not first.usable:
                break
            await asyncio.sleep(0.01)
        assert not first.usable
        with pytest.raises(ConnectionError):
            await first.send(CommandBuffer("PING").packed())
        assert await channel.call(CommandBuffer("PING")) == b"PONG"
        assert wire_of(channel) is not first

    on_channel(redis_server.url, scenario)


def test_a_hung_redis_times_out_and_the_connection_is_dropped(
    redis_factory: Callable[[], RedisServer],
) -> None:
    server = redis_factory()

    async def scenario(channel: CommandChannel) -> None:
        assert await channel.call(CommandBuffer("PING")) == b"PONG"
        first = wire_of(channel)
        with server.hung(), pytest.raises(TimeoutError):
            await channel.call(CommandBuffer("PING"))
        assert not first.usable  # a late reply must not answer the next command
        assert await channel.call(CommandBuffer("ECHO", "next")) == b"next"

    on_channel(server.url, scenario, timeout=0.3)


def test_push_messages_answer_no_command(redis_server: RedisServer) -> None:
    """RESP3 pushes (redis-py 8 speaks RESP3 by default) are out of band, not replies."""
    key = "wire-tracked"

    async def scenario(channel: CommandChannel) -> None:
        assert await channel.call(CommandBuffer("HELLO", 3))
        assert await channel.call(CommandBuffer("CLIENT", "TRACKING", "ON")) == b"OK"
        await channel.call(CommandBuffer("GET", key))  # now tracked: a change pushes
        wire = wire_of(channel)
        waiting = wire.send(CommandBuffer("BLPOP", "wire-empty", "0.3").packed())
        await asyncio.sleep(0.05)
        redis_server.client().set(key, "changed")  # the invalidation arrives meanwhile
        assert await waiting is None  # BLPOP's own reply: it timed out
        assert await channel.call(CommandBuffer("PING")) == b"PONG"
        # Unasked-for pushes do not cost the connection either.
        await channel.call(CommandBuffer("GET", key))
        redis_server.client().set(key, "again")
        await asyncio.sleep(0.05)
        assert await channel.call(CommandBuffer("ECHO", "same")) == b"same"
        assert wire_of(channel) is wire

    on_channel(redis_server.url, scenario, timeout=2)
