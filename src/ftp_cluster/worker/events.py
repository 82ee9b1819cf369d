"""A session's lifecycle as the operator sees it: log events, figures, transfer log.

:class:`SessionEvents` is what ``connection.py`` calls at each step of a
session (connect, refused, login, transfer, quit, disconnect): one call
counts the step in :class:`~.stats.WorkerStats`, logs it as an event with
the session's id, client address and user (see
:mod:`ftp_cluster.shared.logformat`), and for a transfer writes the transfer
log line. A password never reaches it: logins are given by name.

The session id in the log is ``<pid>.<n>``: ``n`` numbers the worker's
connections, the pid keeps it unique across the host's workers and their
restarts, so ``grep '"session": "4711.3"'`` follows one session.
"""

from __future__ import annotations

import logging
import os
import time

from ftp_cluster.shared.logformat import event_fields
from ftp_cluster.shared.users import User
from ftp_cluster.worker.protocol.requests import Failed, Outcome, Transfer
from ftp_cluster.worker.stats import Direction, WorkerStats, login_result, transfer_result
from ftp_cluster.worker.xferlog import TransferEntry, TransferLog

__all__ = ["SessionEvents"]

log = logging.getLogger("ftp_cluster.session")


def _failure(outcome: Outcome) -> str | None:
    return outcome.reason.name if isinstance(outcome, Failed) else None


class SessionEvents:
    """Counts, logs and transfer-logs the steps of one server's sessions."""

    def __init__(self, stats: WorkerStats, transfer_log: TransferLog | None = None) -> None:
        self.stats = stats
        self.transfer_log = transfer_log
        self._pid = os.getpid()  # the worker's: built after the fork

    def session_name(self, session_id: str) -> str:
        return f"{self._pid}.{session_id}"

    def connected(self, session_id: str, client_ip: str) -> None:
        if log.isEnabledFor(logging.INFO):
            extra = event_fields(
                "connect", session=self.session_name(session_id), client_ip=client_ip
            )
            log.info("connect", extra=extra)

    def refused(self, session_id: str, client_ip: str, reason: str) -> None:
        if log.isEnabledFor(logging.INFO):
            extra = event_fields(
                "refused", session=self.session_name(session_id), client_ip=client_ip, reason=reason
            )
            log.info("refused: %s", reason, extra=extra)

    def login(
        self, session_id: str, client_ip: str, login: str, outcome: Outcome, *, banned: bool = False
    ) -> None:
        """One login attempt by name ``login`` (never its password); ``banned``: it failed
        and its address is banned now."""
        result = "banned" if banned else login_result(_failure(outcome))
        self.stats.login(result)
        if log.isEnabledFor(logging.INFO):
            ok = result == "ok"
            extra = event_fields(
                "login",
                session=self.session_name(session_id),
                client_ip=client_ip,
                user=login,
                result=result,
            )
            log.info("login %s", "ok" if ok else f"failed: {result}", extra=extra)

    def transfer(
        self,
        session_id: str,
        client_ip: str,
        *,
        user: User,
        login: str,
        request: Transfer,
        path: str,
        outcome: Outcome,
        seconds: float,
    ) -> None:
        """A transfer that started (its 150 went out) has ended."""
        direction: Direction = "upload" if request.is_upload else "download"
        result = transfer_result(_failure(outcome))
        self.stats.transfer_finished(direction, result, seconds)
        size = request.progress.moved
        if self.transfer_log is not None:
            self.transfer_log.write(
                TransferEntry(
                    finished=time.time(),
                    seconds=seconds,
                    remote_host=client_ip,
                    size=size,
                    path=path,
                    ascii=request.ascii,
                    upload=request.is_upload,
                    anonymous=user.is_anonymous,
                    username=login,
                    complete=result == "ok",
                )
            )
        if log.isEnabledFor(logging.INFO):
            extra = event_fields(
                "transfer",
                session=self.session_name(session_id),
                client_ip=client_ip,
                user=login,
                command=request.kind,
                path=path,
                direction=direction,
                bytes=size,
                seconds=round(seconds, 6),
                result=result,
            )
            log.info("%s %s %s", request.kind, path, result, extra=extra)

    def quit(self, session_id: str, client_ip: str, login: str | None) -> None:
        if log.isEnabledFor(logging.INFO):
            extra = event_fields(
                "quit", session=self.session_name(session_id), client_ip=client_ip, user=login
            )
            log.info("quit", extra=extra)

    def disconnected(self, session_id: str, client_ip: str, login: str | None) -> None:
        if log.isEnabledFor(logging.INFO):
            extra = event_fields(
                "disconnect", session=self.session_name(session_id), client_ip=client_ip, user=login
            )
            log.info("disconnect", extra=extra)

    def reopen(self) -> None:
        """Reopen the transfer log (logrotate renamed it)."""
        if self.transfer_log is not None:
            self.transfer_log.reopen()

    def close(self) -> None:
        if self.transfer_log is not None:
            self.transfer_log.close()
