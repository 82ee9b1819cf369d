"""What the protocol core asks the I/O layer to do, and what it hears back.

The core (:mod:`.session`) never touches a socket or a file. Out of
:meth:`~ftp_cluster.worker.protocol.session.Session.next_event` come bytes to
send, a :class:`Signal`, or one of these frozen :class:`Request` values. The
I/O layer carries a request out and hands the :class:`Outcome` back to
:meth:`~ftp_cluster.worker.protocol.session.Session.complete`, which decides
the reply and the next state. Tests and the fuzzer drive the core the same
way, with outcomes written by hand.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

__all__ = [
    "LISTINGS",
    "UPLOADS",
    "Abort",
    "Authenticate",
    "Close",
    "DataEndpoint",
    "Done",
    "Event",
    "Failed",
    "Failure",
    "FileChange",
    "FileQuery",
    "ListPath",
    "Logout",
    "OpenPassive",
    "Outcome",
    "Progress",
    "QuotaQuery",
    "QuotaStatus",
    "Request",
    "Signal",
    "StartTLS",
    "Transfer",
    "TransferKind",
]

TransferKind = Literal["RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD"]
UPLOADS: frozenset[str] = frozenset({"STOR", "STOU", "APPE"})
LISTINGS: frozenset[str] = frozenset({"LIST", "NLST", "MLSD"})


@dataclass(frozen=True, slots=True)
class DataEndpoint:
    """Where the next data connection comes from: our listener, or the client's port."""

    passive: bool
    host: str = ""
    port: int = 0


class Request:
    """Base of everything the core asks for."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Authenticate(Request):
    """Find ``login``'s account, check ``password`` (``None``: none was asked for)
    and take a slot in the user's count; Done carries the
    :class:`~ftp_cluster.shared.users.User`."""

    login: str
    password: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class Logout(Request):
    """Give up the user slot (USER on a logged-in session)."""


@dataclass(frozen=True, slots=True)
class FileQuery(Request):
    """Look up one path; Done carries its :class:`~.files.FileInfo`."""

    verb: Literal["CWD", "SIZE", "MDTM", "MLST"]
    path: PurePosixPath


@dataclass(frozen=True, slots=True)
class FileChange(Request):
    """Change the tree: MKD, RMD, DELE, rename ``path`` to ``target`` (RNTO),
    or set ``path``'s modification time to ``mtime`` (MFMT)."""

    verb: Literal["MKD", "RMD", "DELE", "RNTO", "MFMT"]
    path: PurePosixPath
    target: PurePosixPath | None = None
    mtime: float | None = None


@dataclass(frozen=True, slots=True)
class ListPath(Request):
    """Read a directory (or one file) for LIST, NLST, MLSD or STAT; Done carries
    a :class:`~.files.Listing`, which the core renders."""

    kind: Literal["LIST", "NLST", "MLSD", "STAT"]
    path: PurePosixPath


@dataclass(frozen=True, slots=True)
class OpenPassive(Request):
    """Open a data listener (closing any unused one); Done carries its port.

    ``protected``: PROT P is in force, so the TLS handshake of the data
    connection may start as soon as the client connects.
    """

    extended: bool
    protected: bool = False


class Progress:
    """Bytes a running transfer has moved: the I/O layer counts, STAT reads."""

    __slots__ = ("moved",)

    def __init__(self) -> None:
        self.moved = 0


@dataclass(frozen=True, slots=True)
class Transfer(Request):
    """Move a file or a rendered listing over the data connection.

    The I/O layer opens the file first (a failure there is replied without a
    preliminary reply), then sends what
    :meth:`~ftp_cluster.worker.protocol.session.Session.opening` gives it,
    gets the data connection and moves the bytes, counting them in
    ``progress``. ``payload`` is the listing text of LIST, NLST and MLSD.
    ``ascii``: TYPE A, line ends translated on the wire. ``protected``: PROT
    P, the data connection runs TLS. For STOU, ``path`` names the directory
    and the preferred name of the file to create.
    """

    kind: TransferKind
    path: PurePosixPath
    endpoint: DataEndpoint
    offset: int = 0
    ascii: bool = False
    protected: bool = False
    payload: bytes | None = field(default=None, repr=False)
    progress: Progress = field(default_factory=Progress, compare=False, repr=False)

    @property
    def is_upload(self) -> bool:
        return self.kind in UPLOADS

    @property
    def is_listing(self) -> bool:
        return self.kind in LISTINGS


@dataclass(frozen=True, slots=True)
class StartTLS(Request):
    """AUTH TLS: the 234 is out; run the TLS handshake on the control connection.

    Done: the session is protected (bytes that came before the handshake are
    dropped); Failed: the connection is unusable and the session hangs up.
    """


@dataclass(frozen=True, slots=True)
class QuotaQuery(Request):
    """The logged-in user's disk usage, for STAT or SITE QUOTA; Done carries a
    :class:`QuotaStatus`."""

    verb: Literal["STAT", "SITE"]


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    """A user's tally against its quota (``None``: unlimited; ``used_*`` ``None``: not
    counted yet)."""

    used_bytes: int | None
    used_files: int | None
    quota_bytes: int | None
    quota_files: int | None

    def line(self) -> str:
        """The reply line: ``quota: 5 of 10 bytes, 1 of 3 files used``."""
        if self.used_bytes is None or self.used_files is None:
            return "quota: usage not known yet (being counted)"
        return (
            f"quota: {_of(self.used_bytes, self.quota_bytes)} bytes, "
            f"{_of(self.used_files, self.quota_files)} files used"
        )


def _of(used: int, limit: int | None) -> str:
    return f"{used} of {limit}" if limit is not None else f"{used} of unlimited"


@dataclass(frozen=True, slots=True)
class Abort(Request):
    """ABOR with no transfer running: close any data listener."""


@dataclass(frozen=True, slots=True)
class Close(Request):
    """QUIT: release every limit slot (the core then says goodbye and hangs up)."""


class Signal(enum.Enum):
    """What the core tells the I/O layer besides bytes and requests."""

    #: Stop the running transfer (ABOR arrived); complete it with ``ABORTED``.
    CANCEL = "cancel"
    #: Close the control connection once the bytes handed out are sent.
    HANGUP = "hangup"


Event = bytes | Request | Signal


class Failure(enum.Enum):
    """Why a request failed, in the words the core needs to choose a reply."""

    NOT_FOUND = "no such file or directory"
    NOT_A_DIRECTORY = "not a directory"
    IS_A_DIRECTORY = "is a directory"
    EXISTS = "already exists"
    NOT_EMPTY = "directory not empty"
    DENIED = "permission denied"
    IO_ERROR = "local error in processing"
    TIMEOUT = "operation timed out"
    BAD_PASSWORD = "login incorrect"
    #: Replied exactly as a bad password, so that logins cannot be probed.
    UNKNOWN_USER = "unknown user"
    USER_LIMIT = "too many connections for this user"
    UNAVAILABLE = "service not available, try again later"
    NO_PASSIVE_PORT = "no free passive port"
    NO_DATA_CONNECTION = "can't open data connection"
    #: The data connection's TLS handshake did not resume this session's TLS
    #: session (or failed): it may be someone else's connection.
    DATA_NOT_PROTECTED = "TLS session of the data connection not resumed"
    CONNECTION_LOST = "connection closed, transfer aborted"
    ABORTED = "transfer aborted"
    #: RFC 959 552: the upload would pass the user's disk quota (its data is gone).
    QUOTA_EXCEEDED = "exceeded storage allocation (disk quota)"
    #: RFC 959 452: the quota's tally cannot be had now; try again later.
    QUOTA_UNAVAILABLE = "insufficient storage space: disk quota cannot be checked now"


@dataclass(frozen=True, slots=True)
class Done:
    """Success; ``value`` depends on the request (User, FileInfo, Listing, (host, port))."""

    value: object = None


@dataclass(frozen=True, slots=True)
class Failed:
    reason: Failure
    detail: str = ""


Outcome = Done | Failed
