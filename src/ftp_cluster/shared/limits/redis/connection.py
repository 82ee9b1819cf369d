"""Redis clients for the limits backend: any URL, short timeouts, no retries.

Accepted URLs:

* ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS), as
  redis-py understands them (query options such as ``ssl_ca_certs`` included);
* ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``;
* ``redis+cluster://[[user]:password@]host[:port][,host[:port]...]`` and
  ``rediss+cluster://``: a Redis Cluster (see :mod:`.cluster`);
* ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``
  and ``rediss+sentinel://`` (TLS to the master). The user and password are
  the master's; ``?sentinel_password=...`` (and ``sentinel_username``)
  authenticate to the sentinels. The sentinel port defaults to 26379.

The limits must never hang a worker, so every socket operation times out
quickly and redis-py retries nothing: the backend decides what a failure
means. Redis closes idle connections when it restarts or after its
``timeout`` setting, so a connection is checked (pool) or a command sent once
more (:class:`CommandChannel`) before that counts as a failure; a timeout
never is, so a Redis that is down or hung is noticed at once.

Commands with many arguments (a batch of lease changes) are packed here
into the Redis protocol by :class:`CommandBuffer` and sent with
:class:`CommandChannel`: redis-py's general-purpose packing costs microseconds
per argument, and its reading tens per reply, which a worker admitting
thousands of sessions a second feels (see :mod:`.resp_wire`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.exceptions
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from ftp_cluster.shared.limits.redis.resp_wire import RespWire, take_over

__all__ = [
    "AsyncRedis",
    "CommandBuffer",
    "CommandChannel",
    "SentinelURL",
    "SyncRedis",
    "async_client",
    "bulk",
    "parse_host_list",
    "parse_sentinel_url",
    "redact",
    "sync_client",
    "url_options",
]

DEFAULT_SENTINEL_PORT = 26379
_SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
_SENTINEL_OPTIONS = {"sentinel_password", "sentinel_username"}


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False


def parse_sentinel_url(url: str) -> SentinelURL | None:
    """Parse a Sentinel URL; ``None`` if ``url`` uses another scheme."""
    parts = urlsplit(url)
    if parts.scheme not in _SENTINEL_SCHEMES:
        return None
    username, password, sentinels = parse_host_list(
        url, parts.netloc, what="sentinel", default_port=DEFAULT_SENTINEL_PORT
    )
    path = [segment for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2:
        raise ValueError(f"expected /service_name[/db] in {redact(url)!r}")
    options = url_options(parts.query, _SENTINEL_OPTIONS, what="Sentinel")
    return SentinelURL(
        sentinels=sentinels,
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username"),
        sentinel_password=options.get("sentinel_password"),
        ssl=_SENTINEL_SCHEMES[parts.scheme],
    )


def parse_host_list(
    url: str, netloc: str, *, what: str, default_port: int
) -> tuple[str | None, str | None, tuple[tuple[str, int], ...]]:
    """The user, password and ``host[:port]`` list of a multi-host ``url``'s ``netloc``.

    Serves the Sentinel and the Cluster URLs; ``what`` names a host in errors.
    """
    # urlsplit cannot take a comma-separated host list apart, so split by hand.
    userinfo, _, hostlist = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    hosts = tuple(_host_port(item, what, default_port) for item in hostlist.split(",") if item)
    if not hosts:
        raise ValueError(f"no {what} address in {redact(url)!r}")
    return unquote(username) or None, unquote(password) or None, hosts


def _host_port(item: str, what: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host:
        raise ValueError(f"empty {what} host in {item!r}")
    return host, int(port) if port else default_port


def url_options(query: str, allowed: set[str], *, what: str) -> dict[str, Any]:
    """The ``?name=value`` options of a URL (the last of a repeated one), all in ``allowed``."""
    options: dict[str, Any] = {key: values[-1] for key, values in parse_qs(query).items()}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"unknown {what} URL options: {', '.join(sorted(unknown))}")
    return options


def redact(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


@dataclass(eq=False)
class AsyncRedis:
    """An asyncio client and whatever else must be closed with it (sentinels)."""

    client: redis.asyncio.Redis | redis.asyncio.RedisCluster
    extra: list[redis.asyncio.Redis] = field(default_factory=list)

    async def aclose(self) -> None:
        if isinstance(self.client, redis.asyncio.RedisCluster):
            await self.client.aclose()
        else:
            await self.client.aclose(close_connection_pool=True)
        for other in self.extra:
            await other.aclose(close_connection_pool=True)


@dataclass(eq=False)
class SyncRedis:
    """A blocking client and whatever else must be closed with it (sentinels)."""

    client: redis.Redis | redis.RedisCluster
    extra: list[redis.Redis] = field(default_factory=list)

    def close(self) -> None:
        self.client.close()
        for other in self.extra:
            other.close()


def _socket_options(timeout: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # While maintenance notifications (a Redis Enterprise feature) are on,
        # which redis-py's "auto" default does for RESP3 over TCP, its pools
        # hand out an idle connection without checking whether Redis closed
        # it, and the first command after a restart fails.
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }


def _sentinel_options(
    url: SentinelURL, timeout: float, retry: object
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments for the sentinel connections and for the master's."""
    sentinels = {
        "username": url.sentinel_username,
        "password": url.sentinel_password,
        "retry": retry,
        **_socket_options(timeout),
    }
    master = {
        "db": url.db,
        "username": url.username,
        "password": url.password,
        "ssl": url.ssl,
        "retry": retry,
        **_socket_options(timeout),
    }
    return sentinels, master


def async_client(url: str, *, timeout: float, max_connections: int = 64) -> AsyncRedis:
    """An asyncio client for ``url``; connects lazily, fails within ``timeout``."""
    from ftp_cluster.shared.limits.redis import cluster  # noqa: PLC0415  (it imports this)

    cluster_url = cluster.parse_cluster_url(url)
    if cluster_url is not None:
        return AsyncRedis(cluster.cluster_async_client(cluster_url, _socket_options(timeout)))
    no_retry = redis.asyncio.retry.Retry(NoBackoff(), 0)
    sentinel = parse_sentinel_url(url)
    if sentinel is None:
        # A bounded pool: a connection storm queues for a connection instead
        # of opening hundreds of them; a dead Redis fails the waiters quickly.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout * 4,
            retry=no_retry,
            **_socket_options(timeout),
        )
        return AsyncRedis(redis.asyncio.Redis(connection_pool=pool))
    sentinel_options, master_options = _sentinel_options(sentinel, timeout, no_retry)
    # Sentinel's annotations differ between redis-py releases; Any keeps the
    # call type-clean on all of them.
    sentinel_class: Any = redis.asyncio.sentinel.Sentinel
    manager = sentinel_class(sentinel.sentinels, sentinel_kwargs=sentinel_options)
    master = manager.master_for(sentinel.service, **master_options)
    return AsyncRedis(master, list(manager.sentinels))


def sync_client(url: str, *, timeout: float) -> SyncRedis:
    """A blocking client for ``url``, for one-off calls outside an event loop."""
    from ftp_cluster.shared.limits.redis import cluster  # noqa: PLC0415  (it imports this)

    cluster_url = cluster.parse_cluster_url(url)
    if cluster_url is not None:
        return SyncRedis(cluster.cluster_sync_client(cluster_url, _socket_options(timeout)))
    no_retry = redis.retry.Retry(NoBackoff(), 0)
    sentinel = parse_sentinel_url(url)
    if sentinel is None:
        return SyncRedis(redis.Redis.from_url(url, retry=no_retry, **_socket_options(timeout)))
    sentinel_options, master_options = _sentinel_options(sentinel, timeout, no_retry)
    sentinel_class: Any = redis.sentinel.Sentinel  # see async_client
    manager = sentinel_class(sentinel.sentinels, sentinel_kwargs=sentinel_options)
    master = manager.master_for(sentinel.service, **master_options)
    return SyncRedis(master, list(manager.sentinels))


def bulk(value: str | int) -> bytes:
    """``value`` as one packed argument (a RESP bulk string)."""
    if isinstance(value, int):
        return _number(value)
    data = value.encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


# Small numbers (key positions, caps, TTLs) recur in every command.
_NUMBERS: dict[int, bytes] = {}


def _number(value: int) -> bytes:
    packed = _NUMBERS.get(value)
    if packed is None:
        digits = b"%d" % value
        packed = b"$%d\r\n%b\r\n" % (len(digits), digits)
        if len(_NUMBERS) < 4096:
            _NUMBERS[value] = packed
    return packed


class CommandBuffer:
    """One Redis command packed into the protocol (RESP) argument by argument."""

    __slots__ = ("_count", "_parts")

    def __init__(self, *args: str | int) -> None:
        self._parts: list[bytes] = [bulk(arg) for arg in args]
        self._count = len(args)

    def add(self, packed: bytes, count: int) -> None:
        """Append ``count`` arguments packed beforehand (with :func:`bulk`)."""
        self._parts.append(packed)
        self._count += count

    def extend(self, other: CommandBuffer) -> None:
        """Append the arguments of ``other``."""
        self._parts += other._parts
        self._count += other._count

    def __len__(self) -> int:
        return self._count

    def packed(self) -> bytes:
        return b"*%d\r\n%b" % (self._count, b"".join(self._parts))


class CommandChannel:
    """A connection of its own, kept out of a client's pool, for packed commands.

    Made by the client's pool (so it connects, authenticates and follows
    Sentinel as the pool's connections do) but used by one caller, one
    command at a time: the Redis backend's batch of lease changes. It skips
    the pool's checkout and, having no socket timeout of its own, the task
    redis-py starts to time every write; :meth:`call` times the whole round
    trip instead. A connection that failed is dropped and made anew.

    A connection that served earlier commands may have been closed while
    idle (Redis restarted, or dropped it after its ``timeout``): if it fails
    with a connection error, the command is sent once more on a new one.
    The command may then run twice (if Redis ran it and only the reply was
    lost), so only commands that are safe to repeat may be sent here.
    Timeouts are never retried: Redis is slow or down, and its caller must
    know at once.
    """

    def __init__(self, client: redis.asyncio.Redis, *, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._connection: redis.asyncio.connection.AbstractConnection | None = None
        self._wire: RespWire | None = None  # the connection's transport, taken over

    async def call(self, command: CommandBuffer) -> Any:
        """Send ``command`` and return its parsed reply (redis-py's errors)."""
        reused = self._connected()
        try:
            return await self._call_once(command)
        except (redis.exceptions.ConnectionError, ConnectionError):
            # A new connection that fails means Redis is unreachable.
            if not reused:
                raise
        return await self._call_once(command)

    def _connected(self) -> bool:
        if self._wire is not None:
            return self._wire.usable
        return self._connection is not None and self._connection.is_connected

    async def _call_once(self, command: CommandBuffer) -> Any:
        if self._wire is not None and not self._wire.usable:
            await self.disconnect()
        connection = self._connection
        if connection is None:
            connection = await self._new_connection()
            connection.socket_timeout = None
            self._connection = connection
        try:
            if not connection.is_connected:
                # connect(), not the implicit connect of a send: Sentinel's
                # connections find their master only in connect().
                await connection.connect()
                self._wire = take_over(connection)
            if self._wire is not None:
                return await self._over_wire(self._wire, command)
            async with asyncio.timeout(self._timeout):
                await connection.send_packed_command(command.packed(), check_health=False)
                return await connection.read_response()
        except BaseException:
            # A reply that is late or half read would answer the next command.
            await self.disconnect()
            raise

    async def _new_connection(self) -> Any:
        """A connection made like the client's own, not yet connected."""
        return self._client.connection_pool.make_connection()  # type: ignore[no-untyped-call]

    async def _over_wire(self, wire: RespWire, command: CommandBuffer) -> Any:
        reply = wire.send(command.packed())
        expiry = asyncio.get_running_loop().call_later(self._timeout, _expire, reply)
        try:
            return await reply
        finally:
            expiry.cancel()

    async def disconnect(self) -> None:
        """Drop the connection; the next call makes a new one."""
        wire, self._wire = self._wire, None
        connection, self._connection = self._connection, None
        if wire is not None:
            wire.close()
        if connection is not None:
            await connection.disconnect(nowait=True)


def _expire(reply: asyncio.Future[Any]) -> None:
    if not reply.done():
        reply.set_exception(TimeoutError("Redis did not answer in time"))
