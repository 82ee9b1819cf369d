"""What the protocol core asks the I/O layer to do, and what it hears back.

The core (:mod:`.session`) never touches a socket or a file. A command that
needs I/O yields one of these frozen :class:`Request` values; the I/O layer
carries it out and hands the :class:`Outcome` back to
:meth:`~ftp_cluster.worker.protocol.session.Session.complete`, which decides
the reply and the next state. Tests drive the core the same way, with real
outcomes written by hand.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from ftp_cluster.shared.users import User
from ftp_cluster.worker.protocol.replies import Reply

__all__ = [
    "Abort",
    "Authenticate",
    "Close",
    "DataEndpoint",
    "Done",
    "Failed",
    "Failure",
    "FileChange",
    "FileQuery",
    "Logout",
    "OpenPassive",
    "Outcome",
    "Request",
    "Transfer",
    "TransferKind",
]

TransferKind = Literal["RETR", "STOR", "APPE", "LIST", "NLST", "MLSD"]
UPLOADS: frozenset[str] = frozenset({"STOR", "APPE"})
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
    """Check ``password`` (``None``: no check) and take a slot in the user's count."""

    user: User
    password: str | None


@dataclass(frozen=True, slots=True)
class Logout(Request):
    """Give up the user slot (USER on a logged-in session), then send ``reply``."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class FileQuery(Request):
    """Look up one path (its :class:`~ftp_cluster.worker.pathio.base.FileInfo`)."""

    verb: Literal["CWD", "SIZE", "MDTM", "MLST"]
    path: PurePosixPath


@dataclass(frozen=True, slots=True)
class FileChange(Request):
    """Change the tree: MKD, RMD, DELE, or rename ``path`` to ``target``."""

    verb: Literal["MKD", "RMD", "DELE", "RNTO"]
    path: PurePosixPath
    target: PurePosixPath | None = None


@dataclass(frozen=True, slots=True)
class OpenPassive(Request):
    """Open a data listener (closing any unused one); Done carries ``(host, port)``."""

    extended: bool


@dataclass(frozen=True, slots=True)
class Transfer(Request):
    """Move a file or a listing over the data connection.

    The I/O layer opens the file first (a failure there is replied without a
    ``preliminary``), then sends ``preliminary`` and connects the data channel.
    """

    kind: TransferKind
    path: PurePosixPath
    endpoint: DataEndpoint
    preliminary: Reply
    offset: int = 0

    @property
    def is_upload(self) -> bool:
        return self.kind in UPLOADS

    @property
    def is_listing(self) -> bool:
        return self.kind in LISTINGS


@dataclass(frozen=True, slots=True)
class Abort(Request):
    """ABOR: stop the running transfer and close any data listener."""


@dataclass(frozen=True, slots=True)
class Close(Request):
    """Release every limit slot, send ``reply``, then close the control connection."""

    reply: Reply


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
    USER_LIMIT = "too many connections for this user"
    UNAVAILABLE = "service not available, try again later"
    NO_PASSIVE_PORT = "no free passive port"
    NO_DATA_CONNECTION = "can't open data connection"
    CONNECTION_LOST = "connection closed, transfer aborted"
    ABORTED = "transfer aborted"


@dataclass(frozen=True, slots=True)
class Done:
    """Success; ``value`` depends on the request (FileInfo, (host, port), byte count)."""

    value: object = None


@dataclass(frozen=True, slots=True)
class Failed:
    reason: Failure
    detail: str = ""


Outcome = Done | Failed
