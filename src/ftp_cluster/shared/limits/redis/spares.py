"""Connection slots a worker holds in Redis ahead of need: the bookkeeping.

A capped admission costs a round trip to Redis, and the session waits for
it. While a count is far below its cap, that wait buys nothing: no answer
Redis could give would refuse the session. So a worker that admits a
session through Redis also asks for a few *spare* slots for the same
client IP. A spare is a lease like a session's (member
``"<worker_id>/~<n>"`` in the server's and the IP's counts, indexed and
refreshed like any other), granted only while both counts are below half
their caps. A later session from that IP takes a free spare and goes on at
once: the swap of the spare's lease for the session's is sent to Redis
without anyone waiting for it. When the session ends, its slot becomes a
spare again the same way.

Spares never let a count exceed its cap: each is a slot Redis granted. What
they cost is exactness on the other side: a session may be refused while
other workers hold free spares. That needs a count past half its cap, is
bounded by 1/16 of the cap per host (each worker keeps at most its share
of that, and at most ``most``), and lasts until those spares have sat idle for one
trim interval, after which they are given back (a worker that Redis
refuses gives back its own at once). Small caps (under 16 per worker) get
no spares at all, and so stay exact.

This module is the worker's side of it, with no I/O: which spares are free,
which sessions stand on one. :mod:`.backend` moves them.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["SPARE_PREFIX", "Spare", "SparePool"]

#: Session ids of spares start with this; real session ids never do.
SPARE_PREFIX = "~"
#: A host's workers together keep at most 1/CAP_SHARE of each cap in spares.
CAP_SHARE = 16


class Spare(NamedTuple):
    """One slot held in the server's and ``ip``'s counts under ``spare_id``."""

    spare_id: str
    ip: str


class SparePool:
    """The free spares of one worker, per client IP; at most ``most`` of them.

    A session takes a spare by having its leases take the spare's place in
    Redis (the backend swaps the members), and gives it back the same way
    under a fresh id; so Redis always counts each session under its own id,
    and the spares free right now under theirs.
    """

    def __init__(self, most: int) -> None:
        if most < 0:
            raise ValueError(f"most must not be negative, not {most!r}")
        self._most = most
        self._total = most  # free or asked for at once, over all IPs
        self._per_ip = most  # free or asked for at once, per IP
        self._serial = 0
        self._free: dict[str, list[str]] = {}  # ip -> free spare ids, newest last
        self._free_count = 0
        self._idle: dict[str, int] = {}  # ip -> fewest free since the last trim
        self._asked: dict[str, int] = {}  # ip -> spares asked for, not yet answered
        self._asked_count = 0
        self._used: dict[str, str] = {}  # session id -> ip, for sessions on a spare

    @property
    def enabled(self) -> bool:
        return self._total > 0 and self._per_ip > 0

    def fit(self, server_cap: int | None, ip_cap: int | None, workers: int) -> None:
        """Bound the spares by the caps they count against (``None``: no cap).

        Each of ``workers`` keeps at most its share of 1/``CAP_SHARE`` of
        each cap, so that together they can hold back no more than that.
        """
        share = CAP_SHARE * max(1, workers)
        self._total = self._most if server_cap is None else min(self._most, server_cap // share)
        self._per_ip = self._total if ip_cap is None else min(self._total, ip_cap // share)

    def take(self, session_id: str, ip: str) -> Spare | None:
        """Stand ``session_id`` on a free spare of ``ip``: the spare, or None."""
        free = self._free.get(ip)
        if not free:
            return None
        spare_id = free.pop()
        self._free_count -= 1
        if len(free) < self._idle.get(ip, 0):
            self._idle[ip] = len(free)
        self._used[session_id] = ip
        return Spare(spare_id, ip)

    def give_back(self, session_id: str, *, keep: bool = True) -> Spare | None:
        """The session ended: the new spare its slot becomes, or None.

        None when it did not stand on a spare, when the pool is full, or
        when ``keep`` is False: its slot is then released as usual.
        """
        ip = self._used.pop(session_id, None)
        if ip is None or not keep or self._free_count >= self._total:
            return None
        if len(self._free.get(ip, ())) >= self._per_ip:
            return None
        spare = self._new(ip)
        self._add_free(spare)
        return spare

    def forget(self, spare: Spare) -> None:
        """Redis does not hold ``spare`` after all: it is no longer free."""
        free = self._free.get(spare.ip, [])
        if spare.spare_id in free:
            free.remove(spare.spare_id)
            self._free_count -= 1
            self._idle[spare.ip] = min(self._idle.get(spare.ip, 0), len(free))

    def ask(self, ip: str, sessions_from_ip: int) -> list[Spare]:
        """New spares worth asking Redis for, along with an admission from ``ip``.

        As many as this worker already has sessions from ``ip`` (a lone
        session from an address asks for none), counting those asked for and
        not answered yet, within the bounds :meth:`fit` set.
        """
        asked = self._asked.get(ip, 0)
        room = self._total - self._free_count - self._asked_count
        ip_room = self._per_ip - len(self._free.get(ip, ())) - asked
        want = min(sessions_from_ip - asked, room, ip_room)
        if want <= 0:
            return []
        self._asked[ip] = self._asked.get(ip, 0) + want
        self._asked_count += want
        return [self._new(ip) for _ in range(want)]

    def answered(self, spare: Spare, *, granted: bool) -> None:
        """Redis said whether it granted ``spare`` (asked for by :meth:`ask`)."""
        self._asked_count -= 1
        left = self._asked.get(spare.ip, 0) - 1
        if left > 0:
            self._asked[spare.ip] = left
        else:
            self._asked.pop(spare.ip, None)
        if granted:
            self._add_free(spare)

    def _new(self, ip: str) -> Spare:
        self._serial += 1
        return Spare(f"{SPARE_PREFIX}{self._serial}", ip)

    def _add_free(self, spare: Spare) -> None:
        free = self._free.setdefault(spare.ip, [])
        # Only spares free since the last trim are idle; this one is not yet.
        self._idle.setdefault(spare.ip, len(free))
        free.append(spare.spare_id)
        self._free_count += 1

    def trim(self) -> list[Spare]:
        """Take out the spares that stayed free since the last trim, to be released."""
        idle: list[Spare] = []
        for ip, free in list(self._free.items()):
            count = min(self._idle.get(ip, 0), len(free))
            idle += (Spare(spare_id, ip) for spare_id in free[:count])  # oldest first
            del free[:count]
            self._free_count -= count
            if free:
                self._idle[ip] = len(free)
            else:
                del self._free[ip]
                self._idle.pop(ip, None)
        return idle

    def drop_free(self) -> list[Spare]:
        """Take out every free spare (Redis went away: it may have lost them)."""
        dropped = self.held()
        self._free.clear()
        self._idle.clear()
        self._free_count = 0
        return dropped

    def held(self) -> list[Spare]:
        """The free spares, which Redis holds under their own ids."""
        return [Spare(spare_id, ip) for ip, free in self._free.items() for spare_id in free]

    def free_count(self) -> int:
        return self._free_count
