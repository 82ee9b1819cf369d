"""The worker's side of the brute-force defender: score failures, log them, delay the answer.

The scores and bans themselves are the limits part
:class:`~ftp_cluster.shared.limits.base.Bans`; this module turns what a
session did into an :class:`~ftp_cluster.shared.limits.base.Offence` and
writes the two log lines fail2ban's filter
(``contrib/fail2ban/filter.d/ftp-cluster.conf``) reads. Their format is
stable; the client's address comes before anything the client chose::

    defender: login failed ip=192.0.2.7 reason=bad_password user='bob'
    defender: limit exceeded ip=192.0.2.7 reason=limit_exceeded
    defender: banned ip=192.0.2.7 offender=192.0.2.7 seconds=1800 ban=1

Passwords are never logged.
"""

from __future__ import annotations

import asyncio
import logging

from ftp_cluster.shared.limits.base import Ban, Bans, Offence
from ftp_cluster.worker.protocol.requests import Failure

__all__ = ["OFFENCES", "log_ban", "login_failed", "refused_for_limit"]

log = logging.getLogger("ftp_cluster.worker")

#: The failed logins that score, and as what.
OFFENCES = {
    Failure.BAD_PASSWORD: Offence.BAD_PASSWORD,
    Failure.UNKNOWN_USER: Offence.UNKNOWN_USER,
    Failure.USER_LIMIT: Offence.LIMIT_EXCEEDED,
}


def log_ban(ip: str, ban: Ban) -> None:
    """The ban line, for a ban that a failure of ``ip`` caused."""
    log.warning(
        "defender: banned ip=%s offender=%s seconds=%d ban=%d",
        ip,
        ban.offender,
        round(ban.seconds),
        ban.number,
    )


async def login_failed(bans: Bans, ip: str, login: str, failure: Failure) -> None:
    """Log a failed login, score it, and wait ``login_delay`` before it is answered.

    The wait is an ``asyncio.sleep`` in the session's own request: the worker
    serves its other sessions meanwhile.
    """
    offence = OFFENCES.get(failure)
    if offence is None:
        return
    log.info("defender: login failed ip=%s reason=%s user=%r", ip, offence.value, login)
    if not bans.settings.enabled:
        return
    delay = bans.settings.login_delay
    ban = await bans.offended(ip, offence)
    if ban is not None:
        log_ban(ip, ban)
    elif delay > 0:
        await asyncio.sleep(delay)


async def refused_for_limit(bans: Bans, ip: str) -> None:
    """Score a connection refused at connect for a connection limit (421)."""
    if not bans.settings.enabled:
        return
    log.info("defender: limit exceeded ip=%s reason=%s", ip, Offence.LIMIT_EXCEEDED.value)
    ban = await bans.offended(ip, Offence.LIMIT_EXCEEDED)
    if ban is not None:
        log_ban(ip, ban)
