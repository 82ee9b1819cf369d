"""The transfer log, ``[logging] transfer_log``: one xferlog(5) line per transfer.

Every worker appends to the one file: it is opened with ``O_APPEND`` and each
line is one ``os.write``, so lines of different workers never interleave (the
kernel moves the offset to the end and writes atomically for regular files).
:meth:`TransferLog.reopen` opens the path anew, for logrotate: the supervisor
forwards ``ftp-cluster reopen-logs`` (SIGUSR1) to the workers.

The fields, as in wu-ftpd, ProFTPD and vsftpd::

    current-time transfer-time remote-host file-size filename transfer-type
    special-action direction access-mode username service-name
    authentication-method authenticated-user-id completion-status

``current-time`` is ``ctime(3)`` in local time (five words), ``transfer-time``
whole seconds, ``file-size`` the bytes moved, ``filename`` the *virtual* path
(whitespace in it written as ``_``, so the line splits into its fields),
``transfer-type`` ``a`` or ``b``, ``special-action`` ``_``, ``direction`` ``o``
(download) or ``i`` (upload), ``access-mode`` ``a`` (anonymous) or ``r``,
``username`` the login name (for anonymous sessions too: the password an
anonymous client gives is never written), ``service-name`` ``ftp``,
``authentication-method`` ``0``, ``authenticated-user-id`` ``*`` and
``completion-status`` ``c`` (complete) or ``i`` (incomplete).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TransferEntry", "TransferLog", "xferlog_line"]

log = logging.getLogger("ftp_cluster.worker")

_BLANK = re.compile(r"\s")
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class TransferEntry:
    """One finished or failed transfer, as the transfer log needs it."""

    finished: float  # time.time() at its end
    seconds: float
    remote_host: str
    size: int  # bytes moved
    path: str  # virtual
    ascii: bool
    upload: bool
    anonymous: bool
    username: str
    complete: bool


def _word(text: str) -> str:
    return _BLANK.sub("_", text) or "_"


def xferlog_line(entry: TransferEntry) -> bytes:
    """``entry`` as one xferlog(5) line, newline included."""
    fields = (
        time.ctime(entry.finished),
        str(max(0, round(entry.seconds))),
        _word(entry.remote_host),
        str(entry.size),
        _word(entry.path),
        "a" if entry.ascii else "b",
        "_",
        "i" if entry.upload else "o",
        "a" if entry.anonymous else "r",
        _word(entry.username),
        "ftp",
        "0",
        "*",
        "c" if entry.complete else "i",
    )
    return (" ".join(fields) + "\n").encode("utf-8", "surrogateescape")


class TransferLog:
    """The file, opened for appending; a write that fails is logged once, not raised."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = self._open()
        self._failing = False

    def _open(self) -> int:
        return os.open(self.path, _FLAGS, 0o640)

    def write(self, entry: TransferEntry) -> None:
        line = xferlog_line(entry)
        try:
            os.write(self._fd, line)  # one call per line: see the module docstring
        except OSError as error:
            if not self._failing:
                log.error("cannot write the transfer log %s: %s", self.path, error)
            self._failing = True
        else:
            self._failing = False

    def reopen(self) -> None:
        """Open the path anew (it was renamed by logrotate); keep the old file on failure."""
        try:
            fd = self._open()
        except OSError as error:
            log.error("cannot reopen the transfer log %s: %s", self.path, error)
            return
        os.close(self._fd)
        self._fd = fd
        log.info("reopened the transfer log %s", self.path)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
