"""What the host allows a server: open files, the listen backlog, passive ports.

Ten thousand sessions on one host need about three descriptors each (the
control connection, a passive listener, its data connection) and an accept
queue that does not overflow when thousands connect at once. The supervisor
calls :func:`raise_open_files` before it forks (workers inherit the limit),
listens with :func:`listen_backlog`, and logs :func:`capacity_warnings`.
"""

from __future__ import annotations

import functools
import resource
import socket
from pathlib import Path

from ftp_cluster.shared.settings import ServerSettings

__all__ = [
    "DESCRIPTORS_PER_SESSION",
    "RESERVED_DESCRIPTORS",
    "capacity_warnings",
    "listen_backlog",
    "raise_open_files",
]

#: Control connection, passive listener, data connection.
DESCRIPTORS_PER_SESSION = 3
#: Descriptors a process needs besides its sessions (Redis, pipes, logs, the loop).
RESERVED_DESCRIPTORS = 64

_SOMAXCONN = Path("/proc/sys/net/core/somaxconn")
_NR_OPEN = Path("/proc/sys/fs/nr_open")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@functools.cache
def listen_backlog() -> int:
    """The kernel's cap on accept queues (``somaxconn``): listen() gets no more anyway."""
    value = _read_int(_SOMAXCONN)
    return value if value is not None and value > 0 else socket.SOMAXCONN


def raise_open_files() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns the limit now in force.

    An unlimited hard limit is capped at ``fs.nr_open``, the most the kernel
    lets one process open.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        target = _read_int(_NR_OPEN) or 1 << 20
    if soft != resource.RLIM_INFINITY and soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        return soft  # a sandbox may refuse; the warning below says what that means
    return target


def capacity_warnings(settings: ServerSettings, open_files: int) -> list[str]:
    """What in the host's limits or the settings keeps ``maximum_connections`` out of reach."""
    wanted = settings.maximum_connections
    if wanted is None:
        return []
    warnings = []
    # Each worker is its own process with its own limit, but a worker may end
    # up holding most sessions (the kernel's reuseport spread is uneven).
    needed = wanted * DESCRIPTORS_PER_SESSION + RESERVED_DESCRIPTORS
    if open_files < needed:
        warnings.append(
            f"the open files limit (RLIMIT_NOFILE) is {open_files}, below the {needed} that "
            f"maximum_connections = {wanted} needs (about {DESCRIPTORS_PER_SESSION} per "
            f"session): raise the hard limit (ulimit -Hn, LimitNOFILE= in systemd)"
        )
    ports = settings.data_ports
    if ports is not None and len(ports) < wanted:
        warnings.append(
            f"passive_ports has {len(ports)} ports, fewer than maximum_connections = {wanted}: "
            f"sessions beyond that get 425 on PASV/EPSV while every port is in use"
        )
    return warnings
