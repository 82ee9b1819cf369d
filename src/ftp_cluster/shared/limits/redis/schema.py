"""What the cluster keeps in Redis: key names and the scripts that change them.

Every key lives under one namespace, so several clusters can share a Redis.
Scripts live in ``lua/``, each starting with its KEYS/ARGV/returns contract;
they are called by SHA1 and reloaded when Redis forgot them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources

__all__ = [
    "BANS",
    "LEASES",
    "QUOTA_ADJUST",
    "QUOTA_RESERVE",
    "QUOTA_SET",
    "REFRESH",
    "RELEASE_WORKER",
    "RESERVE",
    "SCRIPTS",
    "Keys",
    "LuaScript",
]


@dataclass(frozen=True, slots=True)
class LuaScript:
    """One script from ``lua/`` and the SHA1 Redis knows it by."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

    @classmethod
    def load(cls, name: str) -> LuaScript:
        text = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")
        return cls(name, text)


LEASES = LuaScript.load("leases")
REFRESH = LuaScript.load("refresh")
RELEASE_WORKER = LuaScript.load("release_worker")
RESERVE = LuaScript.load("reserve")
BANS = LuaScript.load("bans")
QUOTA_RESERVE = LuaScript.load("quota_reserve")
QUOTA_ADJUST = LuaScript.load("quota_adjust")
QUOTA_SET = LuaScript.load("quota_set")
SCRIPTS = (LEASES, REFRESH, RELEASE_WORKER, RESERVE, BANS, QUOTA_RESERVE, QUOTA_ADJUST, QUOTA_SET)


class Keys:
    """Key names under one namespace, with hash tags for Redis Cluster.

    Each script call touches the keys of one slot only. Every lease count
    (server, per IP, per user) and every worker's index share the tag
    ``{<namespace>}``: one call of ``leases.lua`` admits a batch of sessions
    against the server cap and their IPs' caps at once, and ``refresh.lua``
    and ``release_worker.lua`` reach lease keys through a worker's index, so
    splitting them over slots would need a take-and-roll-back protocol across
    nodes for every admission. Lease traffic is batched (a few calls a
    second per worker), so one master carries it easily. A token bucket's
    arithmetic involves no other bucket, so each bucket has a tag of its own
    (``<namespace>:{bucket:<key>}``) and spreads over the cluster; a
    reservation over several buckets is one call per bucket on a cluster
    (:mod:`.bandwidth`). An offender's score, ban and ban history, which
    ``bans.lua`` changes together, share ``<namespace>:{ip:<offender>}``; a
    quota script touches one key only. On a single Redis the tags change
    nothing but the names.
    """

    def __init__(self, namespace: str, worker_id: str = "") -> None:
        self.leases = f"{{{namespace}}}:conn:"
        self.server = f"{self.leases}server"
        self.workers = f"{{{namespace}}}:worker:"
        self.index = f"{self.workers}{worker_id}"
        self._namespace = namespace
        #: The pub/sub channel every new ban and unban is published on (a
        #: Redis Cluster carries a PUBLISH to every node: no slot matters).
        self.ban_channel = f"{namespace}:bans"
        #: SCAN pattern of every ban key (what :meth:`ban` names).
        self.ban_pattern = f"{namespace}:{{ip:*}}:ban"

    def ip(self, ip: str) -> str:
        return f"{self.leases}ip:{ip}"

    def user(self, user: str) -> str:
        return f"{self.leases}user:{user}"

    def bucket(self, key: str) -> str:
        return f"{self._namespace}:{{bucket:{key}}}"

    def _offender(self, offender: str) -> str:
        # One tag per offender: bans.lua touches its three keys at once.
        return f"{self._namespace}:{{ip:{offender}}}"

    def ban(self, offender: str) -> str:
        return f"{self._offender(offender)}:ban"

    def ban_keys(self, offender: str) -> list[str]:
        """The keys of ``bans.lua`` for one offender: score, ban, history."""
        tagged = self._offender(offender)
        return [f"{tagged}:score", f"{tagged}:ban", f"{tagged}:banned"]

    def offender_of(self, ban_key: str) -> str:
        """The offender a key of :attr:`ban_pattern` is about."""
        return ban_key.removeprefix(f"{self._namespace}:{{ip:").removesuffix("}:ban")

    def quota(self, user: str) -> str:
        """The user's disk tally (a HASH: bytes, files); every quota script touches only it.

        One key per call, so it needs no hash tag to stay on one slot.
        """
        return f"{self._namespace}:quota:{user}"
