"""The bans of a running cluster as seen from outside a worker (blocking clients).

``ftp-cluster bans list|add|remove`` call these. They run the same script
as the workers (``lua/bans.lua``), so a ban added here is published on the
ban channel and every worker of every host refuses the offender, and closes
its sessions, within the second.
"""

from __future__ import annotations

from typing import Any

from ftp_cluster.shared.limits.base import Ban
from ftp_cluster.shared.limits.defender import Policy
from ftp_cluster.shared.limits.redis.bans import ban_arguments
from ftp_cluster.shared.limits.redis.connection import sync_client
from ftp_cluster.shared.limits.redis.schema import BANS, Keys
from ftp_cluster.shared.settings import DefenderSettings

__all__ = ["add_ban", "list_bans", "remove_ban"]

_TIMEOUT = 2.0


def _offender(policy: Policy, ip: str) -> str:
    offender = policy.offender(ip)
    if offender is None:
        raise ValueError(f"{ip!r} is safelisted or not an IP address: it cannot be banned")
    return offender


def _run(url: str, keys: Keys, offender: str, args: list[Any]) -> Any:
    connection = sync_client(url, timeout=_TIMEOUT)
    try:
        return connection.client.execute_command(  # type: ignore[no-untyped-call]
            "EVAL", BANS.source, 3, *keys.ban_keys(offender), *args
        )
    finally:
        connection.close()


def add_ban(
    url: str, namespace: str, settings: DefenderSettings, ip: str, seconds: float | None
) -> Ban:
    """Ban ``ip`` (its /64 for IPv6) for ``seconds``, default its escalated ``ban_time``."""
    policy = Policy(settings)
    offender = _offender(policy, ip)
    keys = Keys(namespace)
    ms = 0 if seconds is None else max(1, int(seconds * 1000))
    reply = _run(
        url, keys, offender, ban_arguments(settings, "ban", offender, keys.ban_channel, ms)
    )
    return Ban(offender, int(reply[1]) / 1000, int(reply[2]))


def remove_ban(url: str, namespace: str, settings: DefenderSettings, ip: str) -> bool:
    """Lift ``ip``'s ban, forget its score and escalation; whether it was banned."""
    policy = Policy(DefenderSettings(ipv6_prefix=settings.ipv6_prefix))  # no safelist here
    offender = policy.offender(ip)
    if offender is None:
        raise ValueError(f"{ip!r} is not an IP address")
    keys = Keys(namespace)
    return bool(
        _run(url, keys, offender, ban_arguments(settings, "unban", offender, keys.ban_channel))
    )


def list_bans(url: str, namespace: str) -> list[Ban]:
    """Every ban in force, by offender."""
    keys = Keys(namespace)
    connection = sync_client(url, timeout=_TIMEOUT)
    try:
        client = connection.client
        names = list(client.scan_iter(match=keys.ban_pattern, count=1000))
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.pttl(name)
            pipe.get(name)
        replies = pipe.execute() if names else []
    finally:
        connection.close()
    found = []
    for index, name in enumerate(names):
        ms, number = replies[2 * index], replies[2 * index + 1]
        if isinstance(ms, int) and ms > 0 and number is not None:
            key = name.decode() if isinstance(name, bytes) else str(name)
            found.append(Ban(keys.offender_of(key), ms / 1000, int(number)))
    return sorted(found, key=lambda ban: ban.offender)
