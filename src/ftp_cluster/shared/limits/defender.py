"""The defender's rules, without state: who an offender is, what it scores, how long it is banned.

Both :class:`~ftp_cluster.shared.limits.local.LocalBans` and the Redis
scripts (``redis/lua/offend.lua``, ``ban.lua``) follow these; the contract
tests hold them to the same answers.
"""

from __future__ import annotations

import functools
import ipaddress

from ftp_cluster.shared.limits.base import Offence
from ftp_cluster.shared.settings import DefenderSettings

__all__ = ["ESCALATION_WINDOW", "Policy"]

#: Bans of one offender within this many seconds escalate (``ban_time_increment``).
ESCALATION_WINDOW = 86400.0

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Policy:
    """:class:`DefenderSettings` as the questions the back ends ask."""

    def __init__(self, settings: DefenderSettings) -> None:
        self.settings = settings
        self._safelist: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in settings.safelist
        )
        self._scores = {
            Offence.BAD_PASSWORD: settings.score_bad_password,
            Offence.UNKNOWN_USER: settings.score_unknown_user,
            Offence.LIMIT_EXCEEDED: settings.score_limit_exceeded,
        }
        # The connect check asks for every connection: parse each address once.
        self.offender = functools.lru_cache(maxsize=4096)(self._offender)

    def _offender(self, ip: str) -> str | None:
        """The key ``ip`` is scored under, or ``None`` if it is safelisted or no address."""
        try:
            # "2001:db8::/64" too: what `bans list` shows an operator may give back.
            text = ip.split("%", 1)[0]
            address = (
                ipaddress.ip_network(text, strict=False).network_address
                if "/" in text
                else ipaddress.ip_address(text)
            )
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self._safelist):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            prefix = self.settings.ipv6_prefix
            return str(ipaddress.IPv6Network((address, prefix), strict=False))
        return str(address)

    def score(self, offence: Offence) -> int:
        """Points ``offence`` adds."""
        return self._scores[offence]

    def ban_seconds(self, number: int) -> float:
        """How long the ``number``-th ban within :data:`ESCALATION_WINDOW` lasts."""
        settings = self.settings
        return settings.ban_time * (1 + settings.ban_time_increment) ** (max(1, number) - 1)
