"""Changing the workers without refusing a connection: reloads and slot removal.

A reload (:class:`Rollout`) replaces the workers one slot at a time: a new
worker starts on the slot's socket, and only once it accepts is the old one
retired (it stops accepting; its sessions go on until they end). The socket
never goes without an accepting worker for long, and its queue is never lost.

A slot removal (:class:`Removal`, SIGTTOU) goes in steps, one per pass of
the supervisor's loop:

1. new connections are steered to the other slots (reuseport BPF), and the
   connections already in the slot's queue are left to its worker;
2. once the queue stays empty, the worker is told to stop accepting and drain,
   like a reloaded worker;
3. once it has closed its copy of the socket, the supervisor closes its own,
   which closes the socket: nothing was left in its queue to reset.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ftp_cluster.supervisor.children import Slot, WorkerHandle
from ftp_cluster.supervisor.sockets import queue_is_empty

if TYPE_CHECKING:
    from ftp_cluster.supervisor.arbiter import Arbiter

__all__ = ["Removal", "Rollout"]

log = logging.getLogger("ftp_cluster.supervisor")

#: Handshakes that were under way when steering started complete within an RTT.
_SETTLE = 0.5
#: Give up waiting for an empty queue (a flood) or for the worker to let go.
_QUEUE_WAIT = 10.0
_RELEASE_WAIT = 5.0


@dataclass(eq=False)
class Removal:
    """The removal of the top slot, advanced by the supervisor's loop."""

    slot: Slot
    steered: bool
    since: float = field(default_factory=time.monotonic)
    leaving: WorkerHandle | None = None
    released_since: float | None = None

    @classmethod
    def begin(cls, arbiter: Arbiter) -> Removal:
        slot = arbiter.slots[-1]
        steered = all([group.steer_away_from_top() for group in arbiter.listener_groups()])
        log.info("removing slot %d%s", slot.index, "" if steered else " (without steering)")
        return cls(slot=slot, steered=steered)

    def advance(self, arbiter: Arbiter) -> bool:
        """One step; True once the slot is gone."""
        if self.released_since is None:
            if self._queue_settled():
                self._release(arbiter)
            return False
        if self._worker_let_go(arbiter):
            for group in arbiter.listener_groups():
                group.remove_top()
            arbiter.slots.pop()
            log.info("slot %d removed: %d worker(s) now", self.slot.index, len(arbiter.slots))
            return True
        return False

    def _queue_settled(self) -> bool:
        if self.slot.pending is not None:
            return False  # a reload's replacement is booting here; let it finish
        waited = time.monotonic() - self.since
        if self.steered and waited < _SETTLE:
            return False
        active = self.slot.active
        if active is None or not active.ready or waited > _QUEUE_WAIT:
            return True
        return all(queue_is_empty(sock) for sock in self.slot.sockets)

    def _release(self, arbiter: Arbiter) -> None:
        self.leaving, self.slot.active = self.slot.active, None
        if self.leaving is not None:
            arbiter.retire(self.leaving)
        self.released_since = time.monotonic()

    def _worker_let_go(self, arbiter: Arbiter) -> bool:
        leaving = self.leaving
        if leaving is None or leaving.draining or leaving.pid not in arbiter.workers:
            return True
        assert self.released_since is not None
        return time.monotonic() - self.released_since > _RELEASE_WAIT


@dataclass(eq=False)
class Rollout:
    """Progress of reloads: which configuration generation is done or failed."""

    done: int = 0
    failed: int = -1  # a replacement of this generation died before accepting

    def advance(self, arbiter: Arbiter) -> None:
        """One step: hand over a ready replacement, or start the next one."""
        if not arbiter.announced:
            return
        for slot in arbiter.slots:
            pending = slot.pending
            if pending is not None:
                if pending.ready:
                    self._hand_over(arbiter, slot, pending)
                return  # one slot at a time
        generation = arbiter.generation
        for slot in arbiter.slots:
            active = slot.active
            if active is None or not active.ready or active.generation >= generation:
                continue
            if self.failed == generation or arbiter.removal is not None:
                return
            slot.pending = arbiter.spawn(slot)
            return
        if generation not in (self.done, self.failed):
            self.done = generation
            log.info("reload complete: every worker runs configuration %d", generation)

    @staticmethod
    def _hand_over(arbiter: Arbiter, slot: Slot, new: WorkerHandle) -> None:
        old, slot.active, slot.pending = slot.active, new, None
        if old is not None:
            arbiter.retire(old)
        log.info("slot %d: worker %d took over", slot.index, new.pid)
