"""Redis Cluster: its URLs, its clients, and the lease channel routed to one slot.

``redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]`` and
``rediss+cluster://`` (TLS to every node) name some nodes of a cluster (the
client finds the rest); ``?ssl_ca_certs=``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_cert_reqs`` and ``ssl_check_hostname`` configure TLS. The port
defaults to 6379. A cluster has one database, so no ``/db`` is accepted.

redis-py's ``RedisCluster`` routes each command by the slot of its keys and
follows ``MOVED``/``ASK`` redirections and failovers (refreshing its slot map
after a connection error). The keys of :mod:`.schema` carry hash tags so
that every script call touches one slot. The lease channel
(:class:`ClusterCommandChannel`) keeps its own connection to the master of
the lease keys' slot, found in the client's slot map; a command that meets a
redirection, ``TRYAGAIN`` or ``CLUSTERDOWN`` there is handed to the client,
which deals with it, and the channel then reconnects to whichever node the
client's refreshed map names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import hiredis
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
import redis.exceptions
import redis.retry
from redis.backoff import NoBackoff

from ftp_cluster.shared.limits.redis.connection import (
    CommandBuffer,
    CommandChannel,
    parse_host_list,
    url_options,
)

__all__ = [
    "CLUSTER_SCHEMES",
    "ClusterCommandChannel",
    "ClusterURL",
    "cluster_async_client",
    "cluster_sync_client",
    "parse_cluster_url",
]

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
DEFAULT_PORT = 6379
_TLS_OPTIONS = {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"}
_BOOLEAN_OPTIONS = {"ssl_check_hostname"}
#: Connections per node. redis-py's cluster pools do not queue a caller when
#: they are exhausted but fail it, which the limits would take for an outage:
#: high enough that a worker's concurrent transfers never get there.
_MAX_CONNECTIONS = 1024
#: Errors that say the slot map is stale or the cluster is changing: the
#: client knows how to deal with them.
_REDIRECTIONS = (
    redis.exceptions.AskError,  # MovedError derives from it
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)


@dataclass(frozen=True, slots=True)
class ClusterURL:
    """A parsed ``redis+cluster://`` URL."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def parse_cluster_url(url: str) -> ClusterURL | None:
    """Parse a Redis Cluster URL; ``None`` if ``url`` uses another scheme."""
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        return None
    username, password, nodes = parse_host_list(
        url, parts.netloc, what="node", default_port=DEFAULT_PORT
    )
    if parts.path not in ("", "/"):
        raise ValueError(f"a Redis Cluster has no databases: drop {parts.path!r}")
    options = url_options(parts.query, _TLS_OPTIONS | _BOOLEAN_OPTIONS, what="Redis Cluster")
    for name in _BOOLEAN_OPTIONS & set(options):
        options[name] = options[name].lower() in ("1", "true", "yes", "on")
    return ClusterURL(
        nodes=nodes,
        username=username,
        password=password,
        ssl=CLUSTER_SCHEMES[parts.scheme],
        options=options,
    )


def _client_options(url: ClusterURL, socket_options: dict[str, Any]) -> dict[str, Any]:
    return {
        "username": url.username,
        "password": url.password,
        "ssl": url.ssl,
        **url.options,
        **socket_options,
    }


def cluster_async_client(
    url: ClusterURL, socket_options: dict[str, Any]
) -> redis.asyncio.cluster.RedisCluster:
    """An asyncio cluster client; connects on first use."""
    # One retry: after a connection error the client refreshes its slot map,
    # so a command sent during a failover reaches the promoted replica if it
    # has taken over; if not, the guard of the limits sees the failure.
    retry = redis.asyncio.retry.Retry(NoBackoff(), 1)
    cluster_class: Any = redis.asyncio.cluster.RedisCluster  # annotations vary by release
    return cluster_class(  # type: ignore[no-any-return]
        startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in url.nodes],
        retry=retry,
        max_connections=_MAX_CONNECTIONS,
        **_client_options(url, socket_options),
    )


def cluster_sync_client(
    url: ClusterURL, socket_options: dict[str, Any]
) -> redis.cluster.RedisCluster:
    """A blocking cluster client, for the supervisor's one-off calls."""
    retry = redis.retry.Retry(NoBackoff(), 1)
    cluster_class: Any = redis.cluster.RedisCluster
    return cluster_class(  # type: ignore[no-any-return]
        startup_nodes=[
            redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call, unused-ignore]
            for h, p in url.nodes
        ],
        retry=retry,
        **_client_options(url, socket_options),
    )


def unpack(packed: bytes) -> list[str | bytes]:
    """The arguments of one packed command (for the client, which packs them itself)."""
    reader = hiredis.Reader()
    reader.feed(packed)
    arguments = reader.gets()
    if not isinstance(arguments, list) or not arguments:
        raise ValueError("not a packed command")
    # The client looks the command up by its name, a str.
    return [arguments[0].decode(), *arguments[1:]]


class ClusterCommandChannel(CommandChannel):
    """:class:`~.connection.CommandChannel` to the master serving ``home_key``'s slot.

    Every command sent here must touch keys of that slot only (the lease
    keys' hash tag sees to it).
    """

    def __init__(
        self, client: redis.asyncio.cluster.RedisCluster, home_key: str, *, timeout: float
    ) -> None:
        super().__init__(client, timeout=timeout)  # type: ignore[arg-type]
        self._cluster = client
        self._home_key = home_key

    async def call(self, command: CommandBuffer) -> Any:
        try:
            return await super().call(command)
        except _REDIRECTIONS:
            # The slot moved, or the cluster is failing over: the client
            # follows, and this channel's next connection goes where it says.
            await self.disconnect()
            arguments: Any = unpack(command.packed())
            return await self._cluster.execute_command(*arguments)

    async def _new_connection(self) -> Any:
        await self._cluster.initialize()  # a no-op once the slot map is known
        node = self._cluster.get_node_from_key(self._home_key)
        if node is None:
            raise redis.exceptions.SlotNotCoveredError(f"no node serves {self._home_key!r}")
        return node.connection_class(**node.connection_kwargs)
