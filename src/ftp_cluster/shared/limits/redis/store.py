"""The Redis one worker's limits talk to, shared by the backend's parts.

One client (a bounded pool, made on first use), a connection of its own for
the lease batches (:class:`~.connection.CommandChannel`), the scripts of
:mod:`.schema` called by SHA1 and loaded again when Redis forgot them, and
the count of commands sent that :class:`~ftp_cluster.shared.limits.base.BackendStats`
reports. Nothing here decides what a failure means: errors reach the
caller, whose guard (:mod:`.health`) does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio
import redis.exceptions

from ftp_cluster.shared.limits.redis.cluster import ClusterCommandChannel, parse_cluster_url
from ftp_cluster.shared.limits.redis.connection import (
    AsyncRedis,
    CommandBuffer,
    CommandChannel,
    async_client,
)
from ftp_cluster.shared.limits.redis.schema import SCRIPTS, LuaScript

__all__ = ["RedisStore"]


class RedisStore:
    """Commands and script calls to the Redis at ``url``, each failing within ``timeout``.

    ``on_forgotten`` is called when Redis answered a script call with
    NOSCRIPT: it restarted or failed over since the scripts were loaded, so
    it has probably lost what the parts keep there too. An instance belongs
    to the event loop it is first used on.
    """

    def __init__(self, url: str, *, timeout: float, home_key: str = "") -> None:
        self.url = url
        self._timeout = timeout
        #: A Redis Cluster: each script call is routed by its keys' slot.
        self.cluster = parse_cluster_url(url) is not None
        # On a cluster, the lease channel goes to the master of this key's slot.
        self._home_key = home_key
        self._redis: AsyncRedis | None = None
        self._channel: CommandChannel | None = None
        #: Commands sent so far; a script call or a batch of lease changes is one.
        self.commands = 0
        self.on_forgotten: Callable[[], None] = _nothing

    @property
    def opened(self) -> bool:
        """Whether a client was ever made (and so may hold anything in Redis)."""
        return self._redis is not None

    def client(self) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
        """The pooled client, made on first use."""
        if self._redis is None:
            self._redis = async_client(self.url, timeout=self._timeout)
        return self._redis.client

    def _lease_channel(self) -> CommandChannel:
        if self._channel is None:
            client = self.client()
            if isinstance(client, redis.asyncio.RedisCluster):
                self._channel = ClusterCommandChannel(client, self._home_key, timeout=self._timeout)
            else:
                self._channel = CommandChannel(client, timeout=self._timeout)
        return self._channel

    async def command(self, *args: Any) -> Any:
        """One command through the pool, counted."""
        self.commands += 1
        client: Any = self.client()  # execute_command is typed in some releases only
        return await client.execute_command(*args)

    async def load_scripts(self) -> None:
        """SCRIPT LOAD every script of :mod:`.schema`."""
        # One round trip for all of them, still one command each.
        self.commands += len(SCRIPTS)
        client = self.client()
        if isinstance(client, redis.asyncio.RedisCluster):
            # The client sends SCRIPT LOAD to every master.
            for script in SCRIPTS:
                await client.script_load(script.source)
            return
        async with client.pipeline(transaction=False) as pipe:
            for script in SCRIPTS:
                pipe.script_load(script.source)
            await pipe.execute()

    async def eval(self, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` (by SHA1, loading the scripts again if Redis forgot them)."""
        try:
            return await self.command("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self.on_forgotten()
            await self.load_scripts()
            return await self.command("EVALSHA", script.sha, len(keys), *keys, *args)

    async def eval_packed(self, script: LuaScript, keys: Sequence[str], args: CommandBuffer) -> Any:
        """:meth:`eval` on the lease channel, for arguments packed beforehand.

        The channel may send a command twice (see :class:`.CommandChannel`):
        only scripts that are safe to repeat may be called this way.
        """
        command = CommandBuffer("EVALSHA", script.sha, len(keys), *keys)
        command.extend(args)
        try:
            self.commands += 1
            return await self._lease_channel().call(command)
        except redis.exceptions.NoScriptError:
            self.on_forgotten()
            await self.load_scripts()
            self.commands += 1
            return await self._lease_channel().call(command)

    async def reconnect(self) -> None:
        """Drop idle pooled connections and the lease channel's; the next calls connect anew.

        After an outage, connections from before it are dead even once Redis
        is back: the first command on one would fail.
        """
        client = self.client()
        if not isinstance(client, redis.asyncio.RedisCluster):
            await client.connection_pool.disconnect(inuse_connections=False)
        # A cluster client drops a node's idle connections itself after an
        # error on one, and retries a command once on a fresh connection.
        await self._lease_channel().disconnect()

    async def close(self) -> None:
        """Close every connection; a later call would open new ones."""
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.disconnect()
        if self._redis is not None:
            redis_client, self._redis = self._redis, None
            await redis_client.aclose()


def _nothing() -> None:
    pass
