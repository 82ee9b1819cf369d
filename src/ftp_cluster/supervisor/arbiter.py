"""The supervisor's main loop: keeps N workers serving N slot sockets.

Signal handlers only wake the loop: the kernel writes each signal's number to
a pipe (``signal.set_wakeup_fd``) and the loop reads and handles them in
order, between its other duties. One pass of the loop: wait (select) on the
signal pipe, the control socket and the workers' status pipes; handle
signals; reap exited workers (``waitpid``, never blocking); kill workers whose
heartbeat stopped; then move the cluster toward where it should be - every
slot served, the slot count right, every worker on the current configuration
(one slot at a time).

SIGTERM: graceful stop. SIGINT, SIGQUIT: fast stop. SIGHUP: reload.
SIGTTIN / SIGTTOU: one slot more / less. SIGCHLD: reap. SIGUSR1: the
workers reopen the transfer log (they get SIGUSR2: their SIGUSR1 is "retire").
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TextIO

from ftp_cluster.shared.config import ConfigError, apply_overrides, load_config
from ftp_cluster.shared.host_limits import capacity_warnings, raise_open_files
from ftp_cluster.shared.settings import ClusterConfig
from ftp_cluster.supervisor.children import (
    Slot,
    WorkerHandle,
    describe_exit,
    fork_worker,
    release_leases,
)
from ftp_cluster.supervisor.embedded_redis import EmbeddedRedis
from ftp_cluster.supervisor.metrics import RetiredTotals
from ftp_cluster.supervisor.scaling import Removal, Rollout
from ftp_cluster.supervisor.sockets import Listeners
from ftp_cluster.supervisor.worker_process import BOOT_ERROR, WorkerSpec, run_worker

__all__ = ["Arbiter"]

log = logging.getLogger("ftp_cluster.supervisor")

_HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
    signal.SIGUSR1,
)
_TICK = 0.25
#: Extra time a draining worker gets beyond graceful_timeout before SIGKILL.
_DRAIN_GRACE = 8.0
_FAST_STOP = 5.0
#: A booting worker gets at least this long to say it accepts (worker_timeout if longer).
_BOOT_TIMEOUT = 10.0


def _noop(signum: int, frame: object) -> None:
    """Python-level handler; the work happens in the loop via the wakeup fd."""


class Arbiter:
    """Runs the cluster until it is stopped; :meth:`run` returns the exit status."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        overrides: Mapping[str, object] | None = None,
        out: TextIO | None = None,
        worker_main: Callable[[WorkerSpec], NoReturn] = run_worker,
    ) -> None:
        """``worker_main`` is what a forked worker runs (another program for tests)."""
        self.config = config
        self.worker_main = worker_main
        self.overrides = dict(overrides or {})
        self.out = out if out is not None else sys.stdout
        self.pid = os.getpid()
        self.hostname = socket.gethostname()
        self.generation = 0
        self.target = config.server.workers
        self.slots: list[Slot] = []
        self.workers: dict[int, WorkerHandle] = {}
        self.listeners: Listeners | None = None
        self.implicit: Listeners | None = None  # the implicit FTPS port's slot sockets
        self.embedded: EmbeddedRedis | None = None
        self.redis_url: str | None = config.redis.url
        self.removal: Removal | None = None
        self.announced = False
        self.stopping = False
        self.stop_deadline = 0.0
        self.exit_code = 0
        self.started = time.time()
        self.on_readable: dict[int, Callable[[], None]] = {}
        self._signal_pipe: tuple[int, int] | None = None
        self.rollout = Rollout()
        self.retired = RetiredTotals()  # dead workers' last figures, for /metrics

    # ------------------------------------------------------------- lifecycle

    def run(self) -> int:
        """Start everything, loop until stopped, clean up; 0 after a clean stop."""
        try:
            self._install_signals()
            # Before any fork: workers inherit the raised limit.
            for warning in capacity_warnings(self.config.server, raise_open_files()):
                log.warning("%s", warning)
            self._start_redis_if_needed(self.target)
            self.listeners = Listeners(self.config.server.host, self.config.server.port)
            tls = self.config.tls
            if tls.enabled and tls.implicit_port is not None:
                self.implicit = Listeners(self.config.server.host, tls.implicit_port)
            for _ in range(self.target):
                self._add_slot()
            while not (self.stopping and not self.workers):
                self._tick()
        finally:
            self._cleanup()
        return self.exit_code

    def _cleanup(self) -> None:
        for handle in list(self.workers.values()):
            handle.signal(signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(handle.pid, 0)
            handle.close_pipe()
        self.workers.clear()
        for group in self.listener_groups():
            group.close()
        if self.embedded is not None:
            self.embedded.stop()
        if self._signal_pipe is not None:
            signal.set_wakeup_fd(-1)
            for fd in self._signal_pipe:
                os.close(fd)
            self._signal_pipe = None

    def _install_signals(self) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        self._signal_pipe = (read_fd, write_fd)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for signum in _HANDLED:
            signal.signal(signum, _noop)

    def _start_redis_if_needed(self, workers: int) -> None:
        """Embedded Redis: no URL given and more than one worker to coordinate."""
        if self.redis_url is not None or workers < 2:
            return
        self.embedded = EmbeddedRedis()
        self.embedded.start()
        self.redis_url = self.embedded.url

    # ------------------------------------------------------------------ loop

    def _tick(self) -> None:
        readable = self._wait()
        for fd in readable:
            callback = self.on_readable.get(fd)
            if callback is not None:
                callback()
        self._read_signals(readable)
        self._read_status(readable)
        self._reap()
        if self.stopping:
            self._push_stop()
            return
        self._check_heartbeats()
        self._check_redis()
        self._maintain()

    def _wait(self) -> list[int]:
        assert self._signal_pipe is not None
        fds = [self._signal_pipe[0], *self.on_readable]
        fds += [h.status_fd for h in self.workers.values() if h.status_fd >= 0]
        try:
            readable, _, _ = select.select(fds, [], [], _TICK)
        except InterruptedError:
            return []
        return readable

    def _read_signals(self, readable: list[int]) -> None:
        assert self._signal_pipe is not None
        if self._signal_pipe[0] not in readable:
            return
        with contextlib.suppress(BlockingIOError):
            for signum in os.read(self._signal_pipe[0], 4096):
                self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # reaping happens every pass anyway
        log.info("got %s", signal.Signals(signum).name)
        if signum == signal.SIGUSR1:
            for handle in self.workers.values():
                handle.signal(signal.SIGUSR2)
            return
        if signum == signal.SIGTERM:
            self.begin_stop(graceful=True)
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            self.begin_stop(graceful=False)
        elif self.stopping:
            return
        elif signum == signal.SIGHUP:
            self.reload()
        elif signum == signal.SIGTTIN:
            self.resize(self.target + 1)
        elif signum == signal.SIGTTOU:
            self.resize(self.target - 1)

    def _read_status(self, readable: list[int]) -> None:
        for handle in list(self.workers.values()):
            if handle.status_fd in readable and not handle.read_status():
                handle.close_pipe()  # end of file: it exits, the reaper will see

    # --------------------------------------------------------------- workers

    def _spec(self, slot: Slot, status_fd: int) -> WorkerSpec:
        redis = dataclasses.replace(self.config.redis, url=self.redis_url)
        return WorkerSpec(
            slot=slot.index,
            sock=slot.sock,
            status_fd=status_fd,
            implicit_sock=slot.implicit_sock,
            config=dataclasses.replace(self.config, redis=redis),
            workers=self.target,
            supervisor_pid=self.pid,
            hostname=self.hostname,
        )

    def spawn(self, slot: Slot) -> WorkerHandle:
        handle = fork_worker(
            lambda fd: self._spec(slot, fd),
            slot,
            self.generation,
            lambda: self._close_in_child(slot),
            self.worker_main,
        )
        handle.redis = (self.redis_url, self.config.redis.namespace)
        self.workers[handle.pid] = handle
        return handle

    def _close_in_child(self, keep: Slot) -> None:
        for slot in self.slots:
            if slot is not keep:
                for sock in slot.sockets:
                    sock.close()
        for handle in self.workers.values():
            handle.close_pipe()
        for fd in list(self.on_readable):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._signal_pipe is not None:
            signal.set_wakeup_fd(-1)
            for fd in self._signal_pipe:
                os.close(fd)

    def _reap(self) -> None:
        for pid, handle in list(self.workers.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            del self.workers[pid]
            handle.read_status()
            handle.close_pipe()
            self.retired.worker_exited(handle)
            self._on_exit(handle, os.waitstatus_to_exitcode(status))

    def _on_exit(self, handle: WorkerHandle, code: int) -> None:
        release_leases(handle, self.hostname, self.pid)
        slot = self._slot(handle.slot)
        how = describe_exit(code)
        if self.stopping:
            log.info("worker %d (slot %d) stopped (%s)", handle.pid, handle.slot, how)
            return
        if handle.retiring or slot is None:
            log.info("worker %d (slot %d) finished draining (%s)", handle.pid, handle.slot, how)
            return
        if slot.pending is handle:
            slot.pending = None
            self.rollout.failed = handle.generation
            log.error(
                "reload: the new worker %d for slot %d died before accepting (%s); the slot "
                "keeps its previous worker",
                handle.pid,
                slot.index,
                how,
            )
            return
        if slot.active is handle:
            slot.active = None
            self._after_crash(slot, handle, code, how)

    def _after_crash(self, slot: Slot, handle: WorkerHandle, code: int, how: str) -> None:
        if code == BOOT_ERROR and not self.announced:
            log.critical(
                "worker %d for slot %d could not boot (%s): stopping; see its error above",
                handle.pid,
                slot.index,
                how,
            )
            self.exit_code = 1
            self.begin_stop(graceful=False)
            return
        self.retired.restarts += 1
        delay = slot.record_exit(handle)
        if delay > 0:
            log.critical(
                "CRASH LOOP: slot %d's worker exited within 1 s of starting %d times in a "
                "row (last: %s); next start in %.0f s",
                slot.index,
                slot.quick_exits,
                how,
                delay,
            )
        else:
            log.warning("worker %d (slot %d) exited: %s; restarting", handle.pid, slot.index, how)

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        for handle in self.workers.values():
            if handle.killed:
                continue
            timeout = self.config.server.worker_timeout
            if not handle.ready:  # a loaded host may boot slowly: not a hang yet
                timeout = max(timeout, _BOOT_TIMEOUT)
            if now - handle.last_seen > timeout:
                what = "sent no heartbeat" if handle.ready else "did not boot"
                log.error("worker %d (slot %d) %s for %.0f s: killing it",
                          handle.pid, handle.slot, what, timeout)  # fmt: skip
                handle.signal(signal.SIGKILL)
            elif handle.deadline is not None and now > handle.deadline:
                log.warning("worker %d still draining at its deadline: killing it", handle.pid)
                handle.signal(signal.SIGKILL)

    def _check_redis(self) -> None:
        if self.embedded is None or self.embedded.exited() is None:
            return
        log.error("the embedded redis-server died; starting it again")
        self.embedded.restart()  # same socket path: the workers reconnect by themselves

    def _slot(self, index: int) -> Slot | None:
        return self.slots[index] if index < len(self.slots) else None

    # --------------------------------------------------------------- maintain

    def _maintain(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            removing = self.removal is not None and self.removal.slot is slot
            vacant = slot.active is None and slot.pending is None
            if vacant and not removing and now >= slot.not_before:
                slot.active = self.spawn(slot)
        self._announce()
        self.rollout.advance(self)
        self._scale()

    def _announce(self) -> None:
        if self.announced or not self.slots:
            return
        if all(s.active is not None and s.active.ready for s in self.slots):
            self.announced = True
            self.rollout.done = self.generation
            line = f"ftp-cluster listening on {self.address} ({len(self.slots)} workers)"
            try:
                self.out.write(line + "\n")
                self.out.flush()
            except OSError:  # nobody reads stdout (closed pipe): the log still says it
                pass
            log.info("%s", line)
            if self.implicit_address is not None:
                log.info("implicit FTPS on %s", self.implicit_address)

    @property
    def address(self) -> str:
        assert self.listeners is not None
        host = self.config.server.host
        shown = f"[{host}]" if ":" in host else host
        return f"ftp://{shown}:{self.listeners.port}"

    @property
    def implicit_address(self) -> str | None:
        if self.implicit is None:
            return None
        host = self.config.server.host
        shown = f"[{host}]" if ":" in host else host
        return f"ftps://{shown}:{self.implicit.port}"

    def listener_groups(self) -> list[Listeners]:
        """The slot socket groups: the FTP port's, and the implicit FTPS port's."""
        return [group for group in (self.listeners, self.implicit) if group is not None]

    def retire(self, handle: WorkerHandle) -> None:
        """Stop accepting; its sessions go on until they end (or graceful_timeout)."""
        handle.retiring = True
        handle.deadline = time.monotonic() + self.config.server.graceful_timeout + _DRAIN_GRACE
        handle.signal(signal.SIGUSR1)

    def _scale(self) -> None:
        if self.removal is not None:
            if self.removal.advance(self):
                self.removal = None
            return
        if not self.announced:
            return
        if len(self.slots) < self.target:
            self._add_slot()
        elif len(self.slots) > self.target:
            self.removal = Removal.begin(self)

    def _add_slot(self) -> None:
        assert self.listeners is not None
        implicit = self.implicit.add() if self.implicit is not None else None
        slot = Slot(index=len(self.slots), sock=self.listeners.add(), implicit_sock=implicit)
        self.slots.append(slot)
        slot.active = self.spawn(slot)

    # -------------------------------------------------------------- commands

    def reload(self) -> dict[str, Any]:
        """Re-read and check the configuration; on success roll the workers onto it."""
        try:
            config = self._load()
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return {"ok": False, "error": str(exc)}
        old = self.config.server
        if (config.server.host, config.server.port) != (old.host, old.port):
            log.warning("reload: host and port cannot change without a restart; keeping them")
            server = dataclasses.replace(config.server, host=old.host, port=old.port)
            config = dataclasses.replace(config, server=server)
        if config.tls.implicit_port != self.config.tls.implicit_port:
            log.warning("reload: [tls] implicit_port cannot change without a restart; keeping it")
            tls = dataclasses.replace(config.tls, implicit_port=self.config.tls.implicit_port)
            config = dataclasses.replace(config, tls=tls)
        if (config.metrics, config.logging.format) != (
            self.config.metrics,
            self.config.logging.format,
        ):
            log.warning(
                "reload: [metrics] and [logging] format take effect at restart; keeping them"
            )
            logging_ = dataclasses.replace(config.logging, format=self.config.logging.format)
            config = dataclasses.replace(config, metrics=self.config.metrics, logging=logging_)
        self.config = config
        self.resize(config.server.workers, roll=False)
        self.generation += 1
        log.info("reload: configuration %d loaded; replacing workers", self.generation)
        return {"ok": True, "generation": self.generation}

    def _load(self) -> ClusterConfig:
        source = self.config.source
        config = load_config(source) if source is not None else ClusterConfig()
        config = apply_overrides(config, self.overrides)
        if config.redis.url is not None:
            self.redis_url = config.redis.url
        elif self.embedded is not None:
            self.redis_url = self.embedded.url
        else:
            self.redis_url = None
        return config

    def resize(self, workers: int, *, roll: bool = True) -> None:
        """Change the number of slots (never below one).

        With ``roll``, the other workers are replaced too: each knows the
        worker count, which sets its share of every limit while Redis is down.
        """
        workers = max(1, workers)
        if workers == self.target:
            return
        if workers > 1 and self.redis_url is None:
            # One worker could keep its limits in-process; several must share them.
            self._start_redis_if_needed(workers)
        log.info("workers: %d -> %d", self.target, workers)
        self.target = workers
        if roll:
            self.generation += 1

    def begin_stop(self, *, graceful: bool) -> None:
        """Close the listening sockets now; let the workers drain (or not) and exit."""
        if self.stopping and graceful:
            return
        self.stopping = True
        for group in self.listener_groups():
            group.close()
        timeout = self.config.server.graceful_timeout + _DRAIN_GRACE if graceful else _FAST_STOP
        self.stop_deadline = time.monotonic() + timeout
        signum = signal.SIGTERM if graceful else signal.SIGQUIT
        log.info(
            "%s stop: %d worker(s) to go", "graceful" if graceful else "fast", len(self.workers)
        )
        for handle in self.workers.values():
            handle.signal(signum)

    def _push_stop(self) -> None:
        if self.workers and time.monotonic() > self.stop_deadline:
            log.warning("%d worker(s) did not stop in time: killing them", len(self.workers))
            for handle in self.workers.values():
                handle.signal(signal.SIGKILL)
            self.stop_deadline = time.monotonic() + _FAST_STOP

    def status(self) -> dict[str, Any]:
        """What ``ftp-cluster status`` shows (the Redis part is added by the client)."""
        handles = sorted(self.workers.values(), key=lambda h: (h.slot, h.started))
        return {
            "ok": True,
            "pid": self.pid,
            "address": self.address if self.listeners is not None else None,
            "implicit_address": self.implicit_address,
            "state": "stopping" if self.stopping else "running" if self.announced else "booting",
            "uptime": round(time.time() - self.started, 3),
            "config": str(self.config.source) if self.config.source else None,
            "root": str(self.config.server.root),  # for `quota scan` of users without base_path
            "generation": self.generation,
            "target_workers": self.target,
            "workers": [h.describe() for h in handles],
            "sessions": sum(h.stats.get("sessions", 0) for h in handles),
            "redis": {
                "url": self.redis_url,
                "embedded": self.embedded is not None,
                "namespace": self.config.redis.namespace,
            },
        }
