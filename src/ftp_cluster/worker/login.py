"""What a login is: find the user, check the password, take the user's slot, open its files.

The core asks for a login with an :class:`~.protocol.requests.Authenticate`;
:func:`log_in` answers it for one session. Users come from the config file
and, with ``[accounts] database``, from PostgreSQL (``ctx.accounts``); slow
hashes are checked in the worker's bounded pool (``ctx.passwords``); the
user's connection cap is a lease; a user with a disk quota gets it counted on
first login. A failure the defender scores (bad password, unknown user, a
connection limit) is reported to it before the reply goes out, so that
``login_delay`` holds the reply back.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftp_cluster.shared.accounts.database import AccountsUnavailable
from ftp_cluster.shared.limits.base import Refusal
from ftp_cluster.shared.users import User
from ftp_cluster.worker import defence
from ftp_cluster.worker.context import WorkerContext
from ftp_cluster.worker.filesystem import UserFileSystem
from ftp_cluster.worker.password_check import ChecksBusy
from ftp_cluster.worker.protocol.requests import Authenticate, Done, Failed, Failure, Outcome
from ftp_cluster.worker.quota import UserQuota

__all__ = ["LoggedIn", "log_in"]


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """A login's outcome; ``files`` is the user's confined file system when it succeeded."""

    outcome: Outcome
    files: UserFileSystem | None = None


async def log_in(
    ctx: WorkerContext, session_id: str, client_ip: str, request: Authenticate
) -> LoggedIn:
    """Run one login attempt of session ``session_id`` from ``client_ip``."""
    done = await _check(ctx, session_id, request)
    outcome = done.outcome
    if type(outcome) is Failed and outcome.reason in defence.OFFENCES:
        await defence.login_failed(ctx.limits.bans, client_ip, request.login, outcome.reason)
    return done


async def _check(ctx: WorkerContext, session_id: str, request: Authenticate) -> LoggedIn:
    try:
        user = await _find_user(ctx, request.login)
    except AccountsUnavailable:
        return LoggedIn(Failed(Failure.UNAVAILABLE))
    if user is None:
        return LoggedIn(Failed(Failure.UNKNOWN_USER))
    if request.password is None:
        if user.password is not None or user.password_hash is not None:
            return LoggedIn(Failed(Failure.BAD_PASSWORD))
    elif user.password_hash is None:
        if not user.check_password(request.password):
            return LoggedIn(Failed(Failure.BAD_PASSWORD))
    # A password hash costs tens of milliseconds by design: off the loop.
    else:
        try:
            right = await ctx.passwords.verify(user.key, user.password_hash, request.password)
        except ChecksBusy:
            return LoggedIn(Failed(Failure.UNAVAILABLE))
        if not right:
            return LoggedIn(Failed(Failure.BAD_PASSWORD))
    refusal = await ctx.limits.leases.login(session_id, user.key, user.maximum_connections)
    if refusal is Refusal.UNAVAILABLE:
        return LoggedIn(Failed(Failure.UNAVAILABLE))
    if refusal is not None:
        return LoggedIn(Failed(Failure.USER_LIMIT))
    root = ctx.root_for(user)
    quota = UserQuota.of(
        user,
        quotas=ctx.limits.quotas,
        settings=ctx.settings,
        scans=ctx.quota_scans,
        path_io=ctx.path_io,
        root=root,
    )
    files = UserFileSystem(ctx.path_io, root, quota)
    if quota is not None:
        await quota.logged_in()
    return LoggedIn(Done(user), files)


async def _find_user(ctx: WorkerContext, login: str) -> User | None:
    if ctx.accounts is None:
        return ctx.options.users.find(login)
    return await ctx.accounts.find(login)
