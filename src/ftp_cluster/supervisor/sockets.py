"""The supervisor's listening sockets: one per worker slot, one shared port.

Every slot gets its own socket bound with ``SO_REUSEPORT`` to the same
address, created before the workers are forked and kept open by the
supervisor for its whole life. The kernel spreads new connections over the
slots' accept queues; a worker that dies or is replaced leaves its queue
behind for the next worker of the slot instead of dropping it.

Removing a slot must not drop what the kernel already put into its queue, nor
what it would put there until the socket is closed. Linux lets a group of
reuseport sockets run a classic BPF program that picks the socket for each new
connection (``SO_ATTACH_REUSEPORT_CBPF``): while a slot is being removed, the
group runs a program that only picks among the slots that stay, so the leaving
slot's queue only shrinks. Group indices are the order in which sockets joined
the group; slots are added and removed at the top only, so the index of a slot
is its number.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import select
import socket
import struct

from ftp_cluster.shared.host_limits import listen_backlog

__all__ = ["ListenError", "Listeners"]

log = logging.getLogger(__name__)

SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)
SO_DETACH_REUSEPORT_BPF = getattr(socket, "SO_DETACH_REUSEPORT_BPF", 68)

# Classic BPF opcodes and the "random number" ancillary load.
_BPF_LD_W_ABS = 0x20
_BPF_ALU_MOD_K = 0x94
_BPF_RET_A = 0x16
_SKF_AD_RANDOM = -0x1000 + 56


class ListenError(OSError):
    """The address cannot be listened on (in use, unknown host, not allowed)."""


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[object, ...]]:
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV
        )
    except socket.gaierror as exc:
        raise ListenError(errno.EINVAL, f"cannot resolve host {host!r}: {exc}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _check_unused(family: socket.AddressFamily, sockaddr: tuple[object, ...]) -> None:
    """Refuse a port someone already listens on.

    With ``SO_REUSEPORT`` a second ``ftp-cluster`` on the same port would bind
    happily and share the traffic; binding once without it first finds out.
    """
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            raise ListenError(exc.errno, f"cannot listen on {_show(sockaddr)}: {exc}") from None


def _show(sockaddr: tuple[object, ...]) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _bound_socket(family: socket.AddressFamily, sockaddr: tuple[object, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.listen(listen_backlog())
    except OSError as exc:
        sock.close()
        raise ListenError(exc.errno, f"cannot listen on {_show(sockaddr)}: {exc}") from None
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def _steering_program(keep: int) -> tuple[bytes, ctypes.Array[ctypes.c_char]]:
    """``struct sock_fprog`` for "a random socket among the first ``keep``".

    Returns the packed struct and the instruction buffer it points to, which
    must stay alive until the ``setsockopt`` call has returned.
    """
    instructions = [
        (_BPF_LD_W_ABS, 0, 0, _SKF_AD_RANDOM & 0xFFFFFFFF),
        (_BPF_ALU_MOD_K, 0, 0, keep),
        (_BPF_RET_A, 0, 0, 0),
    ]
    code = b"".join(struct.pack("HBBI", *ins) for ins in instructions)
    buffer = ctypes.create_string_buffer(code, len(code))
    return struct.pack("HP", len(instructions), ctypes.addressof(buffer)), buffer


class Listeners:
    """The slot sockets of one address; index ``i`` belongs to worker slot ``i``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self._family, self._sockaddr = _resolve(host, port)
        if port != 0:
            _check_unused(self._family, self._sockaddr)
        self.sockets: list[socket.socket] = []
        self._keep: int | None = None
        self.steering_works = True

    @property
    def port(self) -> int:
        if self.sockets:
            return int(self.sockets[0].getsockname()[1])
        return int(str(self._sockaddr[1]))

    def add(self) -> socket.socket:
        """Open the socket of a new top slot (the first one fixes port 0)."""
        sock = _bound_socket(self._family, self._sockaddr)
        if not self.sockets:
            self._sockaddr = (*self._sockaddr[:1], sock.getsockname()[1], *self._sockaddr[2:])
        self.sockets.append(sock)
        self._apply_steering()
        return sock

    def steer_away_from_top(self) -> bool:
        """Send new connections only to the slots below the top one.

        Returns False when the kernel does not support it; the caller then
        removes the slot without that protection.
        """
        if len(self.sockets) < 2:
            return False
        self._keep = len(self.sockets) - 1
        return self._apply_steering()

    def remove_top(self) -> None:
        """Close the supervisor's copy of the top slot's socket and stop steering."""
        self.sockets.pop().close()
        self._keep = None
        self._apply_steering()

    def close(self) -> None:
        """Close every socket (the kernel refuses new connections once no copy is left)."""
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    def _apply_steering(self) -> bool:
        if not self.sockets or not self.steering_works:
            return False
        leader = self.sockets[0]
        try:
            if self._keep is None:
                try:
                    leader.setsockopt(socket.SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:  # ENOENT: no program attached
                        raise
                return True
            program, buffer = _steering_program(self._keep)
            leader.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, program)
            del buffer
            return True
        except OSError as exc:
            log.warning("reuseport steering unavailable (%s); slot removal may reset a few", exc)
            self.steering_works = False
            return False


def queue_is_empty(sock: socket.socket) -> bool:
    """True when no accepted-by-the-kernel connection waits in ``sock``'s queue."""
    if sock.fileno() < 0:
        return True
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable
