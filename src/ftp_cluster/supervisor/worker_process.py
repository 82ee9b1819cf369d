"""What a worker process runs after the supervisor forks it.

The child inherits the supervisor's memory but must not inherit its event
loop, Redis connections or signal handlers: it resets the signals, builds a
fresh uvloop loop, builds its limits back end and :class:`Server` *after* the
fork, and serves its slot's socket. It reports to the supervisor with one
JSON line per message on a pipe: ``ready`` once it accepts, then a
``heartbeat`` about every second (sessions and bytes moved) so that a hung
worker can be noticed.

Signals (see :class:`Stop`): SIGUSR1 retires the worker for a reload or a
slot removal - it stops accepting and its sessions go on until they end or
``graceful_timeout`` passes; SIGTERM is the graceful stop - idle sessions get
421 at once, running transfers get ``graceful_timeout``; SIGINT and SIGQUIT
drop everything now. A stronger request overrides a weaker one. The process exits with
:data:`BOOT_ERROR` when it fails before accepting, so the supervisor can tell
"cannot start at all" from "crashed later".
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import uvloop

from ftp_cluster.shared.limits.base import LimitsBackend
from ftp_cluster.shared.logformat import set_worker
from ftp_cluster.shared.settings import ClusterConfig
from ftp_cluster.supervisor.lifeline import orphaned, set_parent_death_signal

if TYPE_CHECKING:
    from ftp_cluster.worker.server import Server

__all__ = ["BOOT_ERROR", "HEARTBEAT_INTERVAL", "WorkerSpec", "run_worker", "worker_id"]

log = logging.getLogger(__name__)

#: Exit status of a worker that failed before it accepted a connection.
BOOT_ERROR = 3
HEARTBEAT_INTERVAL = 1.0
#: How long closing may take after the sessions are gone (limit releases).
_CLOSE_TIMEOUT = 5.0
_SETTLE = 0.05
# SIGUSR2 (reopen the transfer log) is handled once the loop runs; ignored until then.
_IGNORED = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2)
_RESET = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGCHLD)


def worker_id(hostname: str, supervisor_pid: int, slot: int, pid: int) -> str:
    """Unique over every host sharing a Redis: the supervisor releases leases by it."""
    return f"{hostname}:{supervisor_pid}:{slot}:{pid}"


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker needs, fixed at fork time."""

    slot: int
    sock: socket.socket
    status_fd: int
    implicit_sock: socket.socket | None  # implicit FTPS
    config: ClusterConfig  # with the effective Redis URL (embedded or not)
    workers: int
    supervisor_pid: int
    hostname: str


def run_worker(spec: WorkerSpec) -> NoReturn:
    """The child's whole life; never returns (``os._exit`` skips the parent's atexit)."""
    code = BOOT_ERROR
    worker = _Worker(spec)
    try:
        _prepare_process(spec)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            code = runner.run(worker.main())
    except BaseException:
        log.exception("worker %d (slot %d) failed", os.getpid(), spec.slot)
        code = 1 if worker.accepting else BOOT_ERROR
    finally:
        logging.shutdown()
        os._exit(code)


def _prepare_process(spec: WorkerSpec) -> None:
    set_parent_death_signal(signal.SIGKILL)
    set_worker(spec.slot)
    if orphaned(spec.supervisor_pid):  # it died before prctl took effect
        os._exit(1)
    signal.set_wakeup_fd(-1)
    for signum in _RESET:
        signal.signal(signum, signal.SIG_DFL)
    for signum in _IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    os.set_blocking(spec.status_fd, False)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())  # blocked by the supervisor around fork


def _build_limits(spec: WorkerSpec) -> LimitsBackend:
    redis = spec.config.redis
    if redis.url is None:
        from ftp_cluster.shared.limits.local import LocalLimits  # noqa: PLC0415

        return LocalLimits(defender=spec.config.defender)
    from ftp_cluster.shared.limits.redis import RedisLimits  # noqa: PLC0415

    return RedisLimits(
        redis.url,
        namespace=redis.namespace,
        worker_id=worker_id(spec.hostname, spec.supervisor_pid, spec.slot, os.getpid()),
        workers=spec.workers,
        on_failure=redis.on_failure,
        lease_ttl=redis.lease_ttl,
        spare_slots=redis.spare_slots,
        defender=spec.config.defender,
    )


class Stop(enum.IntEnum):
    """How a worker was asked to stop; a later, stronger request wins."""

    RETIRE = 1  # reload / slot removal: sessions end on their own (graceful_timeout)
    GRACEFUL = 2  # stop: idle sessions get 421 now, transfers finish (graceful_timeout)
    FAST = 3  # drop everything now


_STOP_SIGNALS = {
    signal.SIGUSR1: Stop.RETIRE,
    signal.SIGTERM: Stop.GRACEFUL,
    signal.SIGINT: Stop.FAST,
    signal.SIGQUIT: Stop.FAST,
}


class _Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.accepting = False
        self._server: Server | None = None
        self._stop: Stop | None = None
        self._stop_changed: asyncio.Event | None = None

    async def main(self) -> int:
        from ftp_cluster.worker.server import Server  # noqa: PLC0415 - loaded pre-fork anyway

        loop = asyncio.get_running_loop()
        self._stop_changed = asyncio.Event()
        for signum, how in _STOP_SIGNALS.items():
            loop.add_signal_handler(signum, self._request_stop, how)
        server = Server.from_config(self.spec.config, limits=_build_limits(self.spec))
        self._server = server
        loop.add_signal_handler(signal.SIGUSR2, server.reopen_logs)
        implicit = [self.spec.implicit_sock] if self.spec.implicit_sock is not None else []
        await server.serve([self.spec.sock], implicit)
        self.accepting = True
        self._report({"event": "ready", "pid": os.getpid()})
        heartbeat = loop.create_task(self._heartbeat())
        try:
            await self._stop_changed.wait()
            await self._shut_down(server)
        finally:
            heartbeat.cancel()
        self._send_figures()  # the last totals, for the supervisor's counters
        return 0

    def _request_stop(self, how: Stop) -> None:
        if self._stop is not None and how <= self._stop:
            return
        self._stop = how
        if self._stop_changed is not None:
            self._stop_changed.set()
        if how is Stop.FAST and self._server is not None:
            self._server.close()

    async def _shut_down(self, server: Server) -> None:
        server.stop_accepting()
        self.spec.sock.close()  # the supervisor's copy lives on while the slot does
        if self.spec.implicit_sock is not None:
            self.spec.implicit_sock.close()
        self._report({"event": "draining", "pid": os.getpid()})
        deadline = time.monotonic() + self.spec.config.server.graceful_timeout
        if self._stop is Stop.RETIRE:
            await self._sessions_end(server, deadline)
        if self._stop is not Stop.FAST:
            await server.drain(max(0.0, deadline - time.monotonic()))
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), _CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("worker %d: closing took over %.0f s", os.getpid(), _CLOSE_TIMEOUT)

    async def _sessions_end(self, server: Server, deadline: float) -> None:
        """Let the sessions finish by themselves, unless told to stop harder."""
        assert self._stop_changed is not None
        self._stop_changed.clear()
        # A connection accepted just before stop_accepting gets its session on
        # a later loop turn: let it appear before counting, or drain would 421 it.
        await asyncio.sleep(_SETTLE)
        while server.stats().sessions and self._stop is Stop.RETIRE:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_changed.wait(), min(remaining, 0.1))

    async def _heartbeat(self) -> None:
        while True:
            if orphaned(self.spec.supervisor_pid):
                log.warning("worker %d: the supervisor is gone, exiting", os.getpid())
                self._request_stop(Stop.FAST)
                return
            self._send_figures()
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    def _send_figures(self) -> None:
        if self._server is not None:
            figures = self._server.stats().figures()
            self._report({"event": "heartbeat", "pid": os.getpid(), **figures, "time": time.time()})

    def _report(self, message: dict[str, object]) -> None:
        line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        # Under PIPE_BUF, so one write is atomic; a full pipe (supervisor busy)
        # loses a heartbeat, which the next one makes up for.
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.spec.status_fd, line)
