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
QUOTA_RESERVE = LuaScript.load("quota_reserve")
QUOTA_ADJUST = LuaScript.load("quota_adjust")
QUOTA_SET = LuaScript.load("quota_set")
SCRIPTS = (LEASES, REFRESH, RELEASE_WORKER, RESERVE, QUOTA_RESERVE, QUOTA_ADJUST, QUOTA_SET)


class Keys:
    """Key names under one namespace."""

    def __init__(self, namespace: str, worker_id: str = "") -> None:
        self.leases = f"{namespace}:conn:"
        self.server = f"{self.leases}server"
        self.workers = f"{namespace}:worker:"
        self.index = f"{self.workers}{worker_id}"
        self._buckets = f"{namespace}:bucket:"
        self._quotas = f"{namespace}:quota:"

    def ip(self, ip: str) -> str:
        return f"{self.leases}ip:{ip}"

    def user(self, user: str) -> str:
        return f"{self.leases}user:{user}"

    def bucket(self, key: str) -> str:
        return f"{self._buckets}{key}"

    def quota(self, user: str) -> str:
        """The user's disk tally (a HASH: bytes, files); every quota script touches only it."""
        return f"{self._quotas}{user}"
