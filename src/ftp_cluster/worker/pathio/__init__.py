"""File-system back ends for the FTP server, with aioftp's names."""

from ftp_cluster.worker.pathio.base import (
    AbstractPathIO,
    Download,
    FileInfo,
    PathIOError,
    Upload,
)
from ftp_cluster.worker.pathio.local import AsyncPathIO, PathIO
from ftp_cluster.worker.pathio.memory import MemoryPathIO

__all__ = [
    "AbstractPathIO",
    "AsyncPathIO",
    "Download",
    "FileInfo",
    "MemoryPathIO",
    "PathIO",
    "PathIOError",
    "Upload",
]
