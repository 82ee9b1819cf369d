"""The supervisor's view of its worker processes: forking, status pipes, slots.

A :class:`Slot` is a listening socket plus the worker serving it; the worker
of a slot changes over time (crashes, reloads) while the socket stays. A
:class:`WorkerHandle` is one forked process and what it last reported.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ftp_cluster.supervisor.worker_process import BOOT_ERROR, WorkerSpec, run_worker, worker_id
from ftp_cluster.worker.stats import FIGURES

__all__ = [
    "QUICK_EXIT",
    "Slot",
    "WorkerHandle",
    "backoff_delay",
    "describe_exit",
    "fork_worker",
    "release_leases",
]

log = logging.getLogger(__name__)

#: A worker that exits sooner than this after its start counts as a crash-loop step.
QUICK_EXIT = 1.0
_LOOP_THRESHOLD = 5
_MAX_BACKOFF = 30.0
_MAX_LINE = 64 * 1024
# What a heartbeat carries besides its figures (WorkerStats.figures: live
# sessions, totals since the worker started, transfer-time histograms).
_NOT_FIGURES = frozenset({"event", "pid", "time"})


@dataclass(eq=False)
class WorkerHandle:
    """One worker process, as the supervisor sees it."""

    slot: int
    pid: int
    generation: int
    status_fd: int
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.monotonic)
    ready: bool = False
    draining: bool = False
    retiring: bool = False
    killed: bool = False
    deadline: float | None = None  # retiring: SIGKILL after this
    stats: dict[str, Any] = field(default_factory=dict)  # its last WorkerStats.figures()
    redis: tuple[str | None, str] = (None, "")  # (url, namespace) it was started with
    _buffer: bytes = b""

    @property
    def state(self) -> str:
        if self.draining or self.retiring:
            return "draining"
        return "accepting" if self.ready else "booting"

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum``; a process that is already gone is not an error."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)
        if signum == signal.SIGKILL:
            self.killed = True

    def read_status(self) -> bool:
        """Consume what the worker wrote; False at end of file."""
        try:
            data = os.read(self.status_fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            return False
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > _MAX_LINE:  # not our protocol; do not grow forever
            self._buffer = b""
        for line in lines:
            self._on_message(line)
        return True

    def _on_message(self, line: bytes) -> None:
        try:
            message: Any = json.loads(line)
        except ValueError:
            log.warning("worker %d sent an unreadable status line: %r", self.pid, line[:200])
            return
        if not isinstance(message, dict):
            return
        self.last_seen = time.monotonic()
        event = message.get("event")
        if event == "ready":
            self.ready = True
        elif event == "draining":
            self.draining = True
        elif event == "heartbeat":
            for key, value in message.items():
                if key not in _NOT_FIGURES and isinstance(value, int | float | list):
                    self.stats[key] = value

    def close_pipe(self) -> None:
        if self.status_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.status_fd)
            self.status_fd = -1

    def describe(self) -> dict[str, object]:
        """The worker's entry in ``ftp-cluster status``."""
        return {
            "slot": self.slot,
            "pid": self.pid,
            "state": self.state,
            "generation": self.generation,
            "uptime": round(time.monotonic() - self.started, 3),
            "started": self.started_wall,
            **{figure.name: 0 for figure in FIGURES},  # until its first heartbeat
            **self.stats,
            "heartbeat_age": round(time.monotonic() - self.last_seen, 3),
        }


@dataclass(eq=False)
class Slot:
    """A listening socket (two with implicit FTPS) and the worker serving it."""

    index: int
    sock: socket.socket
    implicit_sock: socket.socket | None = None  # implicit FTPS, when configured
    active: WorkerHandle | None = None
    pending: WorkerHandle | None = None  # a replacement booting during a reload
    quick_exits: int = 0
    not_before: float = 0.0  # crash-loop backoff: no start before this (monotonic)

    @property
    def sockets(self) -> list[socket.socket]:
        return [self.sock] if self.implicit_sock is None else [self.sock, self.implicit_sock]

    def record_exit(self, handle: WorkerHandle) -> float:
        """Count a worker's exit toward the crash loop; returns the restart delay."""
        if time.monotonic() - handle.started < QUICK_EXIT:
            self.quick_exits += 1
        else:
            self.quick_exits = 0
        delay = backoff_delay(self.quick_exits)
        self.not_before = time.monotonic() + delay
        return delay


def backoff_delay(quick_exits: int) -> float:
    """No delay for the first few quick exits, then 1, 2, 4, ... up to 30 s."""
    if quick_exits < _LOOP_THRESHOLD:
        return 0.0
    return min(_MAX_BACKOFF, 2.0 ** (quick_exits - _LOOP_THRESHOLD))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == BOOT_ERROR:
        return f"exit status {code}: failed to boot"
    return f"exit status {code}"


def fork_worker(
    spec_for: Callable[[int], WorkerSpec],
    slot: Slot,
    generation: int,
    close_in_child: Callable[[], None],
    worker_main: Callable[[WorkerSpec], NoReturn] = run_worker,
) -> WorkerHandle:
    """Fork a worker for ``slot``; the child never returns from here.

    ``spec_for(status_fd)`` builds the child's spec; ``close_in_child`` drops
    the supervisor's descriptors the child must not keep (other slots'
    sockets above all: a removed slot's socket must close when its worker
    and the supervisor close theirs).
    """
    read_fd, write_fd = os.pipe()
    spec = spec_for(write_fd)
    sys.stdout.flush()
    sys.stderr.flush()
    # Until the child has reset its handlers, a signal would run the
    # supervisor's handler in the child and write to the supervisor's wakeup
    # pipe; blocked, it waits for the child's own handlers instead.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    # Everything the supervisor made so far (the preloaded modules above all)
    # leaves the collector's view: a collection in the worker would otherwise
    # write to every such object's header and copy its page, so that a worker
    # under its first load paid ~2.5 KiB of private memory per session more
    # than the sessions themselves need (bench scenario 6).
    gc.freeze()
    pid = os.fork()
    if pid != 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    else:  # pragma: no cover - runs in the child, measured by the process tests
        try:
            os.close(read_fd)
            close_in_child()
            worker_main(spec)
        finally:
            os._exit(BOOT_ERROR)
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    log.info("worker %d started for slot %d", pid, slot.index)
    return WorkerHandle(slot=slot.index, pid=pid, generation=generation, status_fd=read_fd)


def release_leases(handle: WorkerHandle, hostname: str, supervisor_pid: int) -> None:
    """Free the connection slots a dead worker held, now rather than at lease expiry."""
    url, namespace = handle.redis
    if url is None:
        return
    ident = worker_id(hostname, supervisor_pid, handle.slot, handle.pid)
    try:
        from ftp_cluster.shared.limits.redis.admin import (  # noqa: PLC0415
            release_worker_leases,
        )

        released = release_worker_leases(url, namespace, ident)
    except Exception as exc:  # Redis down: the leases expire by TTL instead
        log.warning("could not release the leases of worker %d: %s", handle.pid, exc)
        return
    if released:
        log.info("released %d lease(s) of worker %d", released, handle.pid)
