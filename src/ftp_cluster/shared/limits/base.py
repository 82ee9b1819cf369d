"""The limits interface: one abstract class per kind of limit, and the backend that holds them.

A :class:`LimitsBackend` is what a server holds: one attribute per *part*,
each part an implementation of one abstract class with one job, plus the
backend's lifecycle (:meth:`~LimitsBackend.start`, :meth:`~LimitsBackend.close`)
and :meth:`~LimitsBackend.stats`. The parts today:

* :class:`Leases` (``backend.leases``): connection counts. A session that is
  admitted holds a slot in the server-wide count and its IP's count until it
  is released; a session that logs in also holds a slot in its user's count
  until logout or release. Backends that outlive processes (Redis) make
  leases crash-safe; see :mod:`.redis`.
* :class:`Bandwidth` (``backend.bandwidth``): token buckets with
  *reservation* semantics. A caller reserves ``amount`` bytes from one or more
  buckets and is told how long to wait before moving them. A bucket may go
  into debt (that is what makes the wait positive) but never holds more
  credit than its burst, so idle time cannot build up an unbounded burst.
* :class:`Bans` (``backend.bans``): the brute-force defender. Failures
  (:class:`Offence`) add to an IP's score; at the threshold the IP is banned
  for a while, and :meth:`Bans.banned` (no I/O) refuses it at connect.
* :class:`Quotas` (``backend.quotas``): each user's tally of stored bytes
  and files. Uploads reserve space as they go, so that concurrent uploads of
  one user never together pass the user's :class:`QuotaLimits`; deletions
  and the end of an upload adjust the tally. A tally nobody has counted yet
  is unknown (``None``) until a scan of the user's directory sets it.

Adding a part takes the same four steps: an
abstract class here with the operations its callers need; an attribute
``LimitsBackend.<part>`` typed by it; an in-process implementation in
:mod:`.local`, which is also the Redis backend's fallback; and a Redis one in
:mod:`.redis`, whose calls run under the health guard
(:mod:`.redis.health`) and which registers a resync hook there if Redis must
be brought back in line with it after an outage. The contract tests
(``tests/shared/test_limits_contract.py``) then get one parametrised class
for it, run on every back end and in outage mode.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only a type here: settings import users, which import this module.
    from ftp_cluster.shared.settings import DefenderSettings

__all__ = [
    "BackendStats",
    "Ban",
    "Bandwidth",
    "Bans",
    "Bucket",
    "ConnectionCaps",
    "Leases",
    "LimitsBackend",
    "Offence",
    "QuotaLimits",
    "QuotaRefusal",
    "Quotas",
    "Refusal",
    "Usage",
]

#: Burst of every bucket, in seconds of its rate ("at most one second").
BURST_SECONDS = 0.25


class Refusal(enum.Enum):
    """Why a session or login was refused; the FTP layer picks the reply code."""

    SERVER_FULL = "too many connections to this server"  # 421 at connect
    IP_FULL = "too many connections from your address"  # 421 at connect
    USER_FULL = "too many connections for this user"  # 530 at login
    UNAVAILABLE = "service temporarily unavailable"  # 421: limits backend down, fail closed
    BANNED = "your address is banned for too many failed logins"  # 421 at connect, and later


@dataclass(frozen=True, slots=True)
class ConnectionCaps:
    """The connection limits a session is admitted against (``None``: no limit)."""

    server: int | None = None
    per_ip: int | None = None


@dataclass(frozen=True, slots=True)
class Bucket:
    """A shared token bucket: ``key`` names it within the backend's namespace.

    Keys used by the worker: ``"server:upload"``, ``"server:download"``,
    ``"user:<login>:upload"``, ``"user:<login>:download"``.
    """

    key: str
    rate: int  # bytes per second, > 0


@dataclass(frozen=True, slots=True)
class BackendStats:
    """Counters for ``ftp-cluster status`` and the benchmark."""

    healthy: bool
    commands_sent: int  # requests sent to the backing store (0 for in-process)
    sessions: int  # sessions this backend instance holds leases for


class Leases(abc.ABC):
    """Connection slots for the sessions of one worker process.

    Session ids are unique within one backend instance; a backend that is
    shared between processes qualifies them with its own worker identity.
    All methods are called from the worker's event loop.
    """

    @abc.abstractmethod
    async def admit(self, session_id: str, ip: str, caps: ConnectionCaps) -> Refusal | None:
        """Take a server-wide and a per-IP slot for a new session, or say why not."""

    @abc.abstractmethod
    async def login(self, session_id: str, user: str, maximum: int | None) -> Refusal | None:
        """Take a slot in ``user``'s count (``maximum=None``: count, never refuse).

        A session that is already logged in first gives up its previous user slot.
        """

    @abc.abstractmethod
    async def logout(self, session_id: str) -> None:
        """Give up the session's user slot, keep its connection slots."""

    @abc.abstractmethod
    async def release(self, session_id: str) -> None:
        """Give up every slot the session holds; unknown ids are ignored."""


class Bandwidth(abc.ABC):
    """Shared token buckets for the transfers of one worker process.

    All methods are called from the worker's event loop.
    """

    @abc.abstractmethod
    async def reserve(self, buckets: Sequence[Bucket], amount: int) -> float:
        """Reserve ``amount`` bytes from every bucket; seconds to wait before moving them."""

    @abc.abstractmethod
    def chunk_size(self, rate: int) -> int:
        """How many bytes one ``reserve`` should cover at ``rate`` bytes/s.

        In-process reservations are cheap; remote ones are batched so that a
        transfer does not pay a round trip per packet.
        """


class Offence(enum.Enum):
    """What adds to an IP's score; the value is the word the log line uses."""

    BAD_PASSWORD = "bad_password"
    UNKNOWN_USER = "unknown_user"
    LIMIT_EXCEEDED = "limit_exceeded"  # 421 at connect, 530 at login for a connection limit


@dataclass(frozen=True, slots=True)
class Ban:
    """A ban of one offender: an IP, or an IPv6 network (``2001:db8::/64``)."""

    offender: str
    seconds: float  # how long it still lasts
    number: int = 1  # the n-th ban of this offender within a day (0: not known)


def _nobody(ban: Ban) -> None:
    pass


class Bans(abc.ABC):
    """The brute-force defender for the sessions of one worker process.

    ``settings`` say the scores, threshold, durations and safelist; with
    ``settings.enabled`` false nothing is scored and nobody is banned. IPs are
    scored and banned as offenders: an IPv4 address, or the IPv6 network of
    ``ipv6_prefix`` bits around an address. ``on_ban`` is called (in the
    event loop) for every new ban this process hears of, whoever made it, so
    that the server can close the offender's open sessions.
    """

    settings: DefenderSettings

    def __init__(self) -> None:
        self.on_ban: Callable[[Ban], None] = _nobody

    @abc.abstractmethod
    def banned(self, ip: str) -> bool:
        """Whether ``ip`` is banned now; no I/O, cheap enough for every connection."""

    @abc.abstractmethod
    async def offended(self, ip: str, offence: Offence) -> Ban | None:
        """Add ``offence``'s score to ``ip``'s; the ban if this made it reach the threshold."""

    @abc.abstractmethod
    async def ban(self, ip: str, seconds: float | None = None) -> Ban:
        """Ban ``ip`` now, for ``seconds`` (default: its next escalated ``ban_time``)."""

    @abc.abstractmethod
    async def unban(self, ip: str) -> bool:
        """Lift ``ip``'s ban and forget its score and escalation; whether it was banned."""

    @abc.abstractmethod
    async def bans(self) -> list[Ban]:
        """Every ban in force."""


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """A user's disk quota (``None``: that dimension is unlimited)."""

    bytes: int | None = None
    files: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.bytes is None and self.files is None


@dataclass(frozen=True, slots=True)
class Usage:
    """What a user's tally says is stored: bytes and regular files."""

    bytes: int
    files: int


class QuotaRefusal(enum.Enum):
    """Why a quota reservation got nothing; the FTP layer picks the reply code."""

    FILES = "file quota exceeded"  # 552: one more file would pass quota_files
    UNKNOWN = "no tally yet"  # scan the user's directory, then ask again
    UNAVAILABLE = "quota tally unavailable"  # 452: backend down and no tally known


class Quotas(abc.ABC):
    """Each user's tally of stored bytes and files, shared by every worker.

    ``user`` is :attr:`~ftp_cluster.shared.users.User.key`. All methods are
    called from the worker's event loop.
    """

    @abc.abstractmethod
    async def usage(self, user: str) -> Usage | None:
        """The user's tally, or ``None`` if none is known (never counted, or unreachable)."""

    @abc.abstractmethod
    async def reserve(
        self, user: str, limits: QuotaLimits, nbytes: int, files: int = 0
    ) -> int | QuotaRefusal:
        """Add up to ``nbytes`` bytes and exactly ``files`` files to the tally.

        Returns how many bytes were granted: all of ``nbytes`` while the
        quota allows, fewer (down to 0) at its edge; the files are all or
        nothing (:attr:`QuotaRefusal.FILES`). Nothing is added on a refusal.
        """

    @abc.abstractmethod
    async def adjust(self, user: str, nbytes: int, files: int = 0) -> None:
        """Change the tally by ``nbytes`` and ``files`` (negative: freed), whatever the quota.

        An unknown tally stays unknown: the scan that sets it counts the disk.
        """

    @abc.abstractmethod
    async def set_usage(self, user: str, usage: Usage, *, only_if_unknown: bool = False) -> bool:
        """Set the tally (a scan's result); ``only_if_unknown``: keep one that exists.

        True if the tally is now ``usage``.
        """

    @abc.abstractmethod
    def chunk_size(self) -> int:
        """How many bytes one :meth:`reserve` of a running upload should ask for."""


class LimitsBackend(abc.ABC):
    """Every kind of limit for one worker process, one attribute per part.

    A subclass sets each part in its ``__init__``. The parts share the
    backend's lifecycle: callers :meth:`start` it before they use a part,
    and :meth:`close` it when they are done with all of them.
    """

    #: Connection counts (admission, login).
    leases: Leases
    #: Token buckets for transfers.
    bandwidth: Bandwidth
    #: The brute-force defender.
    bans: Bans
    #: Users' disk tallies.
    quotas: Quotas

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect and start background work (lease refresh); idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release everything this instance holds and stop background work."""

    @abc.abstractmethod
    def stats(self) -> BackendStats:
        """Current counters (cheap, no I/O)."""
