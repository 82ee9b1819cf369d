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
    """Key names under one namespace."""

    def __init__(self, namespace: str, worker_id: str = "") -> None:
        self.leases = f"{namespace}:conn:"
        self.server = f"{self.leases}server"
        self.workers = f"{namespace}:worker:"
        self.index = f"{self.workers}{worker_id}"
        self._buckets = f"{namespace}:bucket:"
        self._defender = f"{namespace}:"
        #: The pub/sub channel every new ban and unban is published on.
        self.ban_channel = f"{namespace}:bans"
        #: SCAN pattern of every ban key (what :meth:`ban` names).
        self.ban_pattern = f"{namespace}:ban:*"
        self._quotas = f"{namespace}:quota:"

    def ip(self, ip: str) -> str:
        return f"{self.leases}ip:{ip}"

    def user(self, user: str) -> str:
        return f"{self.leases}user:{user}"

    def bucket(self, key: str) -> str:
        return f"{self._buckets}{key}"

    def ban(self, offender: str) -> str:
        return f"{self._defender}ban:{offender}"

    def ban_keys(self, offender: str) -> list[str]:
        """The keys of ``bans.lua`` for one offender: score, ban, history."""
        return [
            f"{self._defender}score:{offender}",
            self.ban(offender),
            f"{self._defender}banned:{offender}",
        ]

    def offender_of(self, ban_key: str) -> str:
        """The offender a key of :attr:`ban_pattern` is about."""
        return ban_key.removeprefix(f"{self._defender}ban:")

    def quota(self, user: str) -> str:
        """The user's disk tally (a HASH: bytes, files); every quota script touches only it."""
        return f"{self._quotas}{user}"
