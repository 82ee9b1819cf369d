"""The servers under test, by the names ``--servers`` accepts."""

from __future__ import annotations

from collections.abc import Sequence

from bench.peers.aioftp_peer import AioftpPeer
from bench.peers.base import Peer, PeerUnavailable, Running, ServeSpec
from bench.peers.ftp_cluster import FtpClusterPeer
from bench.peers.pyftpdlib_peer import PyftpdlibPeer
from bench.peers.vsftpd import VsftpdPeer

__all__ = ["SERVER_NAMES", "Peer", "PeerUnavailable", "Running", "ServeSpec", "build_peers"]

SERVER_NAMES = ("ftp-cluster", "pyftpdlib", "aioftp", "vsftpd")


def build_peers(servers: Sequence[str], workers: Sequence[int]) -> list[Peer]:
    """One peer per server name; ``ftp-cluster`` becomes one peer per worker count."""
    peers: list[Peer] = []
    for name in servers:
        if name == "ftp-cluster":
            peers += [FtpClusterPeer(count) for count in workers]
        elif name == "pyftpdlib":
            peers.append(PyftpdlibPeer())
        elif name == "aioftp":
            peers.append(AioftpPeer())
        elif name == "vsftpd":
            peers.append(VsftpdPeer())
        else:
            raise ValueError(f"unknown server {name!r} (choose from {', '.join(SERVER_NAMES)})")
    return peers
