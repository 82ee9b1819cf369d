"""ftp-cluster: an asyncio FTP server with cluster-wide limits in Redis.

The library API mirrors aioftp's server::

    server = ftp_cluster.Server(users, path_io_factory=ftp_cluster.MemoryPathIO)
    await server.start("127.0.0.1", 2121)
    server.close()
    await server.wait_closed()
"""

from ftp_cluster.shared.limits.base import Bandwidth, Leases, LimitsBackend
from ftp_cluster.shared.settings import ClusterConfig, RedisSettings, ServerSettings
from ftp_cluster.shared.users import Permission, User
from ftp_cluster.worker.pathio import (
    AbstractPathIO,
    AsyncPathIO,
    MemoryPathIO,
    PathIO,
    PathIOError,
)
from ftp_cluster.worker.server import Server, ServerStats

__version__ = "0.1.0"

__all__ = [
    "AbstractPathIO",
    "AsyncPathIO",
    "Bandwidth",
    "ClusterConfig",
    "Leases",
    "LimitsBackend",
    "MemoryPathIO",
    "PathIO",
    "PathIOError",
    "Permission",
    "RedisSettings",
    "Server",
    "ServerSettings",
    "ServerStats",
    "User",
]
