"""The lease changes a worker sends to Redis, and how a batch of them shrinks.

A session makes three or four of these (admit, login, swap onto or off a
spare slot, release); :mod:`.backend` queues them and sends each batch
to ``lua/leases.lua`` in order. Under churn many sessions come and go within
one batch, and :func:`coalesce` drops or merges the operations whose effects
cancel out before they reach Redis.
"""

from __future__ import annotations

from typing import NamedTuple

from ftp_cluster.shared.limits.redis.spares import SPARE_PREFIX

__all__ = ["Admit", "LeaseChange", "Login", "Release", "Swap", "coalesce"]

# Named tuples, not frozen dataclasses: a session makes three or four of
# them, and a four-field tuple is made in half the time.


class Admit(NamedTuple):
    """Take the connection leases (server, per IP) for a new session; caps -1: none."""

    session_id: str
    ip: str
    server_cap: int
    ip_cap: int


class Login(NamedTuple):
    """Take a user lease (and drop the one of ``previous``, if any)."""

    session_id: str
    user: str
    cap: int
    previous: str | None  # the user the session was logged in as


class Release(NamedTuple):
    """Drop a session's user lease (if any), and its connection leases unless ``ip`` is None."""

    session_id: str
    ip: str | None  # None: keep the connection leases (logout)
    user: str | None


class Swap(NamedTuple):
    """Move a session's connection leases to another id, counts unchanged."""

    session_id: str  # gives its connection leases to
    new_id: str  # (one of them a spare slot's id)
    ip: str


LeaseChange = Admit | Login | Release | Swap


def coalesce(changes: list[LeaseChange]) -> tuple[list[LeaseChange], list[int | None]]:
    """The operations that do what ``changes`` do, fewer where they can be.

    Churn makes two patterns in which a session comes and goes within one
    batch, and neither needs its own operations in Redis:

    * Admitted, then released: its admission, logins and releases cancel out.
      Only an unawaited admission can share a batch with its session's
      release, and nobody reads the results of those.
    * Standing on a spare slot: X -> B (B takes spare X), then B -> Y (B
      leaves its slot as the new spare Y). That is X -> Y, done where X -> B
      was, and B's login and logout cancel out. Chains merge the same way:
      A -> X, X -> B, B -> Y is A -> Y. Swaps move leases without changing
      any count, so nothing between them can depend on B's lease; and spare
      ids are known to this worker alone.

    Returns the operations to send and, per change, the position of the
    operation whose result is its own, or None for a change that cancelled
    out (its result is 0: done).
    """
    operations: list[LeaseChange | None] = []
    slots: list[int | None] = []
    arrived: dict[str, int] = {}  # id -> position of the operation that gave it its slot
    extras: dict[str, list[int]] = {}  # session -> its other changes (numbers in ``slots``)
    gone: set[str] = set()  # sessions merged away: their user leases' releases follow

    def cancel(numbers: list[int]) -> None:
        for number in numbers:
            position = slots[number]
            assert position is not None
            operations[position] = slots[number] = None

    for change in changes:
        session_id = change.session_id
        number = len(slots)
        if session_id in gone:
            slots.append(None)
            continue
        if isinstance(change, Swap):
            position = arrived.pop(session_id, None)
            first = None if position is None else operations[position]
            if position is not None and isinstance(first, Swap):
                cancel(extras.pop(session_id, []))
                if not session_id.startswith(SPARE_PREFIX):
                    gone.add(session_id)
                operations[position] = Swap(first.session_id, change.new_id, change.ip)
                slots.append(position)
                arrived[change.new_id] = position
                extras[change.new_id] = []
                continue
            extras.pop(session_id, None)
            arrived[change.new_id] = len(operations)
            extras[change.new_id] = []
        elif isinstance(change, Admit):
            if not session_id.startswith(SPARE_PREFIX):  # a spare's answer is read
                arrived[session_id] = len(operations)
                extras[session_id] = [number]
        elif session_id in extras:
            if isinstance(change, Release) and change.ip is not None:
                # A full release: only an admission's extras hold the admission.
                arrival = extras.pop(session_id)
                position = arrived.pop(session_id)
                if isinstance(operations[position], Admit):
                    cancel(arrival)
                    slots.append(None)
                    continue
            else:
                extras[session_id].append(number)
        slots.append(len(operations))
        operations.append(change)
    return _compact(operations, slots)


def _compact(
    operations: list[LeaseChange | None], slots: list[int | None]
) -> tuple[list[LeaseChange], list[int | None]]:
    """Drop the operations that cancelled out (None), and renumber the slots."""
    kept: list[LeaseChange] = []
    renumbered: list[int] = []  # old position -> new position
    for operation in operations:
        renumbered.append(len(kept))
        if operation is not None:
            kept.append(operation)
    return kept, [None if slot is None else renumbered[slot] for slot in slots]
