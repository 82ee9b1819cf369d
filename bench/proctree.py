"""Process-tree measurements with psutil: memory of a server, CPU taken by everyone else.

A server's memory is the sum over its whole tree (supervisor, workers,
embedded redis-server, or vsftpd's per-session processes). RSS counts a shared
page once per process that maps it, so for forking servers two more figures
are reported beside it: USS (pages only one process maps) and PSS (each shared
page split between the processes sharing it, so the tree's PSS sums to what it
really occupies).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

__all__ = ["Disturbance", "LoadWatch", "TreeMemory", "tree_memory", "tree_pids"]


@dataclass(frozen=True)
class TreeMemory:
    rss: int
    uss: int
    pss: int
    processes: int


def _tree(pid: int) -> list[psutil.Process]:
    try:
        top = psutil.Process(pid)
        return [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_pids(pid: int) -> set[int]:
    return {process.pid for process in _tree(pid)}


def tree_memory(pid: int) -> TreeMemory:
    """RSS, USS and PSS summed over ``pid`` and all its descendants."""
    rss = uss = pss = count = 0
    for process in _tree(pid):
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        uss += info.uss
        pss += getattr(info, "pss", 0)
        count += 1
    return TreeMemory(rss, uss, pss, count)


@dataclass(frozen=True)
class Disturbance:
    """CPU time used by processes outside the benchmark while a scenario ran."""

    seconds: float  # wall time of the window
    foreign_cpu: float  # CPU seconds of processes outside the harness's tree
    busiest: str  # the foreign process that used the most

    @property
    def foreign_cores(self) -> float:
        return self.foreign_cpu / self.seconds if self.seconds > 0 else 0.0


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class LoadWatch:
    """Measures how much CPU other programs took during a window.

    Everything the harness started descends from this process; any other
    process that burns CPU in the window competes with client and server for
    the cores, and the scenario's figures are flagged.
    """

    def __init__(self, server_pid: int | None = None) -> None:
        self._start = 0.0
        self._before: dict[int, tuple[str, float]] = {}
        # vsftpd's session processes call setsid() and are orphaned for a moment
        # when a session ends, so they can drop out of the server's tree: a
        # process with the server's own (non-interpreter) name, started after
        # it, is the server's too.
        self._server: tuple[str, float] | None = None
        if server_pid is not None:
            try:
                server = psutil.Process(server_pid)
                name = server.name()
                if not name.startswith("python"):
                    self._server = (name, server.create_time())
            except psutil.Error:
                pass

    def _ours(self, process: psutil.Process, tree: set[int]) -> bool:
        if process.pid in tree:
            return True
        if self._server is None:
            return False
        try:
            name, started = self._server
            return process.name() == name and process.create_time() >= started
        except psutil.Error:
            return False

    def _foreign(self) -> dict[int, tuple[str, float]]:
        tree = tree_pids(os.getpid())
        seen: dict[int, tuple[str, float]] = {}
        for process in psutil.process_iter(["name", "ppid"]):
            # Kernel threads (children of kthreadd, pid 2) include ksoftirqd,
            # which does the benchmark's own loopback work under load.
            if process.pid == 2 or process.info["ppid"] == 2 or self._ours(process, tree):
                continue
            try:
                seen[process.pid] = (str(process.info["name"]), _cpu(process))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return seen

    def start(self) -> None:
        self._start = time.monotonic()
        self._before = self._foreign()

    def stop(self) -> Disturbance:
        after = self._foreign()
        used: dict[str, float] = {}
        for pid, (name, cpu) in after.items():
            before = self._before.get(pid)
            delta = cpu - before[1] if before is not None and before[0] == name else cpu
            if delta > 0:
                used[name] = used.get(name, 0.0) + delta
        busiest = max(used, key=used.__getitem__, default="")
        return Disturbance(time.monotonic() - self._start, sum(used.values()), busiest)
