"""Redis clients for the limits backend: any URL, short timeouts, no retries.

Accepted URLs:

* ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS), as
  redis-py understands them (query options such as ``ssl_ca_certs`` included);
* ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``;
* ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``
  and ``rediss+sentinel://`` (TLS to the master). The user and password are
  the master's; ``?sentinel_password=...`` (and ``sentinel_username``)
  authenticate to the sentinels. The sentinel port defaults to 26379.

The limits must never hang a worker, so every socket operation times out
quickly and nothing is retried here: the backend decides what a failure means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff

__all__ = [
    "AsyncRedis",
    "SentinelURL",
    "SyncRedis",
    "async_client",
    "parse_sentinel_url",
    "redact",
    "sync_client",
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
    # urlsplit cannot take a comma-separated host list apart, so split by hand.
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = tuple(_host_port(item) for item in hostlist.split(",") if item)
    if not sentinels:
        raise ValueError(f"no sentinel address in {redact(url)!r}")
    path = [segment for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2:
        raise ValueError(f"expected /service_name[/db] in {redact(url)!r}")
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(options) - _SENTINEL_OPTIONS
    if unknown:
        raise ValueError(f"unknown Sentinel URL options: {', '.join(sorted(unknown))}")
    return SentinelURL(
        sentinels=sentinels,
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_username=options.get("sentinel_username"),
        sentinel_password=options.get("sentinel_password"),
        ssl=_SENTINEL_SCHEMES[parts.scheme],
    )


def _host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host:
        raise ValueError(f"empty sentinel host in {item!r}")
    return host, int(port) if port else DEFAULT_SENTINEL_PORT


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

    client: redis.asyncio.Redis
    extra: list[redis.asyncio.Redis] = field(default_factory=list)

    async def aclose(self) -> None:
        await self.client.aclose(close_connection_pool=True)
        for other in self.extra:
            await other.aclose(close_connection_pool=True)


@dataclass(eq=False)
class SyncRedis:
    """A blocking client and whatever else must be closed with it (sentinels)."""

    client: redis.Redis
    extra: list[redis.Redis] = field(default_factory=list)

    def close(self) -> None:
        self.client.close()
        for other in self.extra:
            other.close()


def _socket_options(timeout: float) -> dict[str, Any]:
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout}


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
    manager = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        sentinel.sentinels, sentinel_kwargs=sentinel_options
    )
    master = manager.master_for(sentinel.service, **master_options)
    return AsyncRedis(master, list(manager.sentinels))


def sync_client(url: str, *, timeout: float) -> SyncRedis:
    """A blocking client for ``url``, for one-off calls outside an event loop."""
    no_retry = redis.retry.Retry(NoBackoff(), 0)
    sentinel = parse_sentinel_url(url)
    if sentinel is None:
        return SyncRedis(redis.Redis.from_url(url, retry=no_retry, **_socket_options(timeout)))
    sentinel_options, master_options = _sentinel_options(sentinel, timeout, no_retry)
    manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        sentinel.sentinels, sentinel_kwargs=sentinel_options
    )
    master = manager.master_for(  # type: ignore[no-untyped-call]
        sentinel.service, **master_options
    )
    return SyncRedis(master, list(manager.sentinels))
