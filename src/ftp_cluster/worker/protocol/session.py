"""The FTP session as a state machine: commands in, replies and requests out.

No sockets, no asyncio, no file system: :meth:`Session.handle` takes one
parsed command and returns either a :class:`Reply` to send or a
:class:`~.requests.Request` for the I/O layer, which reports back through
:meth:`Session.complete`. One request is in flight at a time; the I/O layer
queues further commands meanwhile (ABOR excepted).

Which commands exist, whether they need a login, whether they take an
argument and whether they keep a pending REST is data (:data:`COMMANDS`);
the handlers only decide replies.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

from ftp_cluster.shared.users import User, UserTable
from ftp_cluster.worker.pathio.base import FileInfo
from ftp_cluster.worker.protocol import listing
from ftp_cluster.worker.protocol.commands import Command
from ftp_cluster.worker.protocol.paths import ROOT, resolve
from ftp_cluster.worker.protocol.replies import Reply
from ftp_cluster.worker.protocol.requests import (
    Abort,
    Authenticate,
    Close,
    DataEndpoint,
    Done,
    Failed,
    Failure,
    FileChange,
    FileQuery,
    Logout,
    OpenPassive,
    Outcome,
    Request,
    Transfer,
    TransferKind,
)

__all__ = ["COMMANDS", "Phase", "Session", "SessionOptions", "Step"]

Step = Reply | Request


class Phase(enum.Enum):
    AWAIT_USER = "await-user"
    AWAIT_PASS = "await-pass"
    LOGGED_IN = "logged-in"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """What a session needs to know of its server (shared by all sessions)."""

    users: UserTable
    welcome_message: str = "ftp-cluster ready"
    system_type: str = "UNIX Type: L8"
    greeting: Reply = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Every session sends it: made once per server, not once per session.
        object.__setattr__(self, "greeting", Reply.of(220, self.welcome_message))


Argument = Literal["none", "optional", "required"]
Handler = Callable[["Session", str], Step]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    handler: Handler
    login: bool = True
    argument: Argument = "optional"
    keeps_rest: bool = False


FEATURES = (
    "EPRT",
    "EPSV",
    "MDTM",
    "MLST type*;size*;modify*;create*;perm*;unique*;",
    "PASV",
    "REST STREAM",
    "SIZE",
    "TVFS",
    "UTF8",
)

_FAILURE_CODES: dict[Failure, int] = {
    Failure.IO_ERROR: 451,
    Failure.TIMEOUT: 451,
    Failure.UNAVAILABLE: 421,
    Failure.NO_PASSIVE_PORT: 421,
    Failure.NO_DATA_CONNECTION: 425,
    Failure.CONNECTION_LOST: 426,
    Failure.ABORTED: 426,
    Failure.BAD_PASSWORD: 530,
    Failure.USER_LIMIT: 530,
}


# Replies every session sends, made once (replies are immutable values).
_PASSWORD_REQUIRED = Reply.of(331, "password required")
_LOGGED_IN = Reply.of(230, "login successful")
_GOODBYE = Reply.of(221, "goodbye")
_TRANSFER_COMPLETE = Reply.of(226, "transfer complete")
_OK = Reply.of(200, "ok")
_TYPE_SET = {kind: Reply.of(200, f"type set to {kind}") for kind in ("A", "I")}


def failure_reply(failed: Failed) -> Reply:
    """The reply for a failed request; file-system refusals are 550."""
    code = _FAILURE_CODES.get(failed.reason, 550)
    text = failed.reason.value
    return Reply.of(code, f"{text}: {failed.detail}" if failed.detail else text)


@functools.lru_cache(maxsize=4096)
def normalise_host(host: str) -> str:
    """One spelling per address: IPv4-mapped IPv6 becomes IPv4, zone ids go."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def quote_path(path: PurePosixPath) -> str:
    """RFC 959 quoting for 257 replies: embedded double quotes are doubled."""
    return '"' + str(path).replace('"', '""') + '"'


class Session:
    """One control connection's protocol state."""

    __slots__ = (
        "_candidate",
        "cwd",
        "endpoint",
        "mlst_facts",
        "options",
        "peer",
        "phase",
        "rename_from",
        "rest",
        "transfer_type",
        "user",
    )

    def __init__(self, options: SessionOptions, peer: str = "127.0.0.1") -> None:
        self.options = options
        self.peer = normalise_host(peer)
        self.phase = Phase.AWAIT_USER
        self.user: User | None = None
        self._candidate: User | None = None
        self.cwd = ROOT
        self.rest = 0
        self.rename_from: PurePosixPath | None = None
        self.endpoint: DataEndpoint | None = None
        self.transfer_type = "I"
        self.mlst_facts: tuple[str, ...] = listing.FACTS

    # -- entry points -------------------------------------------------------

    def greeting(self) -> Reply:
        return self.options.greeting

    def handle(self, command: Command) -> Step:
        """Decide what one command does."""
        spec = COMMANDS.get(command.verb)
        if spec is None:
            return Reply.of(502, f"command {command.verb!s} not implemented")
        if not spec.keeps_rest:
            self.rest = 0
        if spec.login and self.phase is not Phase.LOGGED_IN:
            return Reply.of(530, "please log in with USER and PASS")
        argument = command.argument
        if spec.argument == "required" and not argument:
            return Reply.of(501, f"{command.verb} needs an argument")
        if spec.argument == "none" and argument:
            return Reply.of(501, f"{command.verb} takes no argument")
        if command.verb != "RNTO":
            self.rename_from = None
        return spec.handler(self, argument)

    def complete(self, request: Request, outcome: Outcome) -> Reply:
        """The reply for a finished request; updates state on success."""
        if isinstance(outcome, Failed):
            return self._failed(request, outcome)
        match request:
            case Authenticate(user=user):
                return self._logged_in(user)
            case Logout(reply=reply):
                return reply
            case FileQuery():
                return self._query_done(request, outcome)
            case FileChange():
                return self._change_done(request)
            case OpenPassive(extended=extended):
                return self._passive_done(extended, outcome)
            case Transfer():
                self.endpoint = None
                return _TRANSFER_COMPLETE
            case Abort():
                self.endpoint = None
                return Reply.of(226, "abort successful")
            case Close(reply=reply):
                return reply
        raise TypeError(f"unknown request {request!r}")

    # -- helpers ------------------------------------------------------------

    def path(self, argument: str) -> PurePosixPath:
        return resolve(self.cwd, argument)

    def can_read(self, path: PurePosixPath) -> bool:
        return self.user is not None and self.user.permission_for(path).readable

    def can_write(self, path: PurePosixPath) -> bool:
        return self.user is not None and self.user.permission_for(path).writable

    def _failed(self, request: Request, outcome: Failed) -> Reply:
        if isinstance(request, Authenticate):
            self.phase, self.user, self._candidate = Phase.AWAIT_USER, None, None
        if isinstance(request, Transfer | Abort):
            self.endpoint = None
        return failure_reply(outcome)

    def _logged_in(self, user: User) -> Reply:
        self.phase, self.user, self._candidate = Phase.LOGGED_IN, user, None
        self.cwd = user.home_path
        return _LOGGED_IN

    def _query_done(self, request: FileQuery, outcome: Done) -> Reply:
        info = outcome.value
        assert isinstance(info, FileInfo)
        match request.verb:
            case "CWD":
                if not info.is_dir:
                    return Reply.of(550, "not a directory")
                self.cwd = request.path
                return Reply.of(250, f"directory changed to {request.path}")
            case "SIZE":
                if info.is_dir:
                    return Reply.of(550, "not a regular file")
                return Reply.of(213, str(info.size))
            case "MDTM":
                if info.is_dir:
                    return Reply.of(550, "not a regular file")
                return Reply.of(213, listing.modify_time(info.mtime))
        facts = self.facts(request.path, info)
        return Reply(250, (f"listing {request.path}", f"{facts} {request.path}", "end"))

    def _change_done(self, request: FileChange) -> Reply:
        match request.verb:
            case "MKD":
                return Reply.of(257, f"{quote_path(request.path)} created")
            case "RNTO":
                return Reply.of(250, "rename successful")
        return Reply.of(250, f"{request.verb} successful")

    def _passive_done(self, extended: bool, outcome: Done) -> Reply:
        value = outcome.value
        assert isinstance(value, tuple)
        host, port = value
        self.endpoint = DataEndpoint(passive=True)
        if extended:
            return Reply.of(229, f"entering extended passive mode (|||{port}|)")
        numbers = ",".join([*str(host).split("."), str(port >> 8), str(port & 0xFF)])
        return Reply.of(227, f"entering passive mode ({numbers})")

    def facts(self, path: PurePosixPath, info: FileInfo, kind: str | None = None) -> str:
        return listing.mlsx_facts(
            info,
            readable=self.can_read(path),
            writable=self.can_write(path),
            kind=kind,
            wanted=self.mlst_facts,
        )

    # -- access control -----------------------------------------------------

    def _user(self, login: str) -> Step:
        was_logged_in = self.phase is Phase.LOGGED_IN
        self.user, self.phase, self.cwd = None, Phase.AWAIT_USER, ROOT
        self.endpoint = None
        candidate = self.options.users.find(login)
        if candidate is None:
            reply = Reply.of(530, "no such user")
            return Logout(reply) if was_logged_in else reply
        if candidate.password is None and candidate.password_hash is None:
            return Authenticate(candidate, None)
        self._candidate, self.phase = candidate, Phase.AWAIT_PASS
        reply = _PASSWORD_REQUIRED
        return Logout(reply) if was_logged_in else reply

    def _pass(self, password: str) -> Step:
        if self.phase is Phase.LOGGED_IN:
            return Reply.of(230, "already logged in")
        if self.phase is not Phase.AWAIT_PASS or self._candidate is None:
            return Reply.of(503, "send USER first")
        return Authenticate(self._candidate, password)

    def _quit(self, _: str) -> Step:
        self.phase = Phase.CLOSED
        return Close(_GOODBYE)

    # -- informational ------------------------------------------------------

    def _noop(self, _: str) -> Step:
        return _OK

    def _syst(self, _: str) -> Step:
        return Reply.of(215, self.options.system_type)

    def _feat(self, _: str) -> Step:
        return Reply(211, ("features:", *FEATURES, "end"))

    def _opts(self, argument: str) -> Step:
        option, _, value = argument.partition(" ")
        if option.upper() in ("UTF8", "UTF-8"):
            return Reply.of(200, "always in UTF8 mode")
        if option.upper() == "MLST":
            wanted = {fact.lower() for fact in value.split(";") if fact}
            self.mlst_facts = tuple(f for f in listing.FACTS if f in wanted)
            return Reply.of(200, "MLST OPTS " + "".join(f"{f};" for f in self.mlst_facts))
        return Reply.of(501, "option not understood")

    def _type(self, argument: str) -> Step:
        kind = argument.upper().split()[0]
        if kind not in ("A", "I", "L"):
            return Reply.of(504, f"type {argument} not supported")
        self.transfer_type = "A" if kind == "A" else "I"
        return _TYPE_SET[self.transfer_type]

    def _mode(self, argument: str) -> Step:
        if argument.upper() == "S":
            return Reply.of(200, "mode set to S")
        return Reply.of(504, "only stream mode is supported")

    def _stru(self, argument: str) -> Step:
        if argument.upper() == "F":
            return Reply.of(200, "structure set to F")
        return Reply.of(504, "only file structure is supported")

    def _allo(self, _: str) -> Step:
        return Reply.of(202, "no storage allocation necessary")

    def _stat(self, argument: str) -> Step:
        if argument:
            return Reply.of(502, "STAT with an argument is not implemented; use MLST")
        who = self.user.key if self.user is not None else "nobody"
        return Reply(211, ("status:", f"logged in as {who}", f"TYPE {self.transfer_type}", "end"))

    def _help(self, _: str) -> Step:
        return Reply(214, ("commands:", " ".join(sorted(COMMANDS)), "end"))

    # -- navigation ---------------------------------------------------------

    def _pwd(self, _: str) -> Step:
        return Reply.of(257, f"{quote_path(self.cwd)} is the current directory")

    def _cwd(self, argument: str) -> Step:
        path = self.path(argument)
        if not self.can_read(path):
            return Reply.of(550, "permission denied")
        return FileQuery("CWD", path)

    def _cdup(self, _: str) -> Step:
        return self._cwd("..")

    def _query(self, verb: Literal["SIZE", "MDTM", "MLST"], argument: str) -> Step:
        path = self.path(argument)
        if not self.can_read(path):
            return Reply.of(550, "permission denied")
        return FileQuery(verb, path)

    def _size(self, argument: str) -> Step:
        return self._query("SIZE", argument)

    def _mdtm(self, argument: str) -> Step:
        return self._query("MDTM", argument)

    def _mlst(self, argument: str) -> Step:
        return self._query("MLST", argument)

    # -- changes ------------------------------------------------------------

    def _change(self, verb: Literal["MKD", "RMD", "DELE"], argument: str) -> Step:
        path = self.path(argument)
        if path == ROOT or not self.can_write(path):
            return Reply.of(550, "permission denied")
        return FileChange(verb, path)

    def _mkd(self, argument: str) -> Step:
        return self._change("MKD", argument)

    def _rmd(self, argument: str) -> Step:
        return self._change("RMD", argument)

    def _dele(self, argument: str) -> Step:
        return self._change("DELE", argument)

    def _rnfr(self, argument: str) -> Step:
        path = self.path(argument)
        if path == ROOT or not self.can_write(path):
            return Reply.of(550, "permission denied")
        self.rename_from = path
        return Reply.of(350, "ready for RNTO")

    def _rnto(self, argument: str) -> Step:
        source, self.rename_from = self.rename_from, None
        if source is None:
            return Reply.of(503, "send RNFR first")
        target = self.path(argument)
        if target == ROOT or not self.can_write(target):
            return Reply.of(550, "permission denied")
        return FileChange("RNTO", source, target)

    # -- data connections ---------------------------------------------------

    def _pasv(self, _: str) -> Step:
        return OpenPassive(extended=False)

    def _epsv(self, argument: str) -> Step:
        if argument.upper() == "ALL":
            return Reply.of(200, "EPSV ALL accepted")
        if argument and argument not in ("1", "2"):
            return Reply.of(522, "network protocol not supported, use (1,2)")
        return OpenPassive(extended=True)

    def _port(self, argument: str) -> Step:
        fields = argument.split(",")
        try:
            numbers = [int(field) for field in fields]
        except ValueError:
            numbers = []
        if len(numbers) != 6 or not all(0 <= n <= 255 for n in numbers):
            return Reply.of(501, "syntax error in PORT arguments")
        host = ".".join(map(str, numbers[:4]))
        return self._active(host, numbers[4] << 8 | numbers[5])

    def _eprt(self, argument: str) -> Step:
        if len(argument) < 2:
            return Reply.of(501, "syntax error in EPRT arguments")
        parts = argument[1:].split(argument[0])
        if len(parts) < 3 or parts[0] not in ("1", "2") or not parts[2].isdigit():
            return Reply.of(501, "syntax error in EPRT arguments")
        return self._active(parts[1], int(parts[2]))

    def _active(self, host: str, port: int) -> Step:
        # FTP bounce: a data connection may only go back to the client itself.
        if normalise_host(host) != self.peer:
            return Reply.of(504, "data connections go to your own address only")
        if not 1024 <= port <= 65535:
            return Reply.of(504, "refusing privileged or invalid data port")
        self.endpoint = DataEndpoint(passive=False, host=host, port=port)
        return Reply.of(200, "active data connection accepted")

    def _rest(self, argument: str) -> Step:
        if not argument.isdigit():
            return Reply.of(501, "REST needs a non-negative byte offset")
        self.rest = int(argument)
        return Reply.of(350, f"restarting at {self.rest}, send RETR or STOR")

    def _abor(self, _: str) -> Step:
        return Abort()

    # -- transfers ----------------------------------------------------------

    def _transfer(self, kind: TransferKind, path: PurePosixPath, *, write: bool) -> Step:
        allowed = self.can_write(path) if write else self.can_read(path)
        offset, self.rest = self.rest, 0
        if not allowed:
            return Reply.of(550, "permission denied")
        if self.endpoint is None:
            return Reply.of(425, "use PASV, EPSV, PORT or EPRT first")
        opening = Reply.of(150, f"opening data connection for {kind} {path}")
        return Transfer(kind, path, self.endpoint, opening, offset)

    def _retr(self, argument: str) -> Step:
        return self._transfer("RETR", self.path(argument), write=False)

    def _stor(self, argument: str) -> Step:
        return self._transfer("STOR", self.path(argument), write=True)

    def _appe(self, argument: str) -> Step:
        return self._transfer("APPE", self.path(argument), write=True)

    def _listing(self, kind: TransferKind, argument: str) -> Step:
        # Clients send ls options ("LIST -la"); they select nothing here.
        words = [word for word in argument.split(" ") if word and not word.startswith("-")]
        return self._transfer(kind, self.path(" ".join(words)), write=False)

    def _list(self, argument: str) -> Step:
        return self._listing("LIST", argument)

    def _nlst(self, argument: str) -> Step:
        return self._listing("NLST", argument)

    def _mlsd(self, argument: str) -> Step:
        return self._listing("MLSD", argument)


def _spec(
    handler: Handler, *, login: bool = True, argument: Argument = "optional", rest: bool = False
) -> CommandSpec:
    return CommandSpec(handler, login=login, argument=argument, keeps_rest=rest)


S = Session
#: The command table: the only place that says which verbs exist and their rules.
COMMANDS: dict[str, CommandSpec] = {
    "USER": _spec(S._user, login=False, argument="required"),
    "PASS": _spec(S._pass, login=False),
    "QUIT": _spec(S._quit, login=False),
    "NOOP": _spec(S._noop, login=False),
    "SYST": _spec(S._syst, login=False),
    "FEAT": _spec(S._feat, login=False),
    "OPTS": _spec(S._opts, login=False, argument="required"),
    "HELP": _spec(S._help, login=False),
    "TYPE": _spec(S._type, argument="required"),
    "MODE": _spec(S._mode, argument="required"),
    "STRU": _spec(S._stru, argument="required"),
    "ALLO": _spec(S._allo),
    "STAT": _spec(S._stat),
    "PWD": _spec(S._pwd, argument="none"),
    "XPWD": _spec(S._pwd, argument="none"),
    "CWD": _spec(S._cwd),
    "XCWD": _spec(S._cwd),
    "CDUP": _spec(S._cdup, argument="none"),
    "XCUP": _spec(S._cdup, argument="none"),
    "SIZE": _spec(S._size, argument="required"),
    "MDTM": _spec(S._mdtm, argument="required"),
    "MLST": _spec(S._mlst),
    "MKD": _spec(S._mkd, argument="required"),
    "XMKD": _spec(S._mkd, argument="required"),
    "RMD": _spec(S._rmd, argument="required"),
    "XRMD": _spec(S._rmd, argument="required"),
    "DELE": _spec(S._dele, argument="required"),
    "RNFR": _spec(S._rnfr, argument="required"),
    "RNTO": _spec(S._rnto, argument="required"),
    "PASV": _spec(S._pasv, argument="none"),
    "EPSV": _spec(S._epsv),
    "PORT": _spec(S._port, argument="required"),
    "EPRT": _spec(S._eprt, argument="required"),
    "REST": _spec(S._rest, argument="required", rest=True),
    "ABOR": _spec(S._abor, login=False),
    "RETR": _spec(S._retr, argument="required", rest=True),
    "STOR": _spec(S._stor, argument="required", rest=True),
    "APPE": _spec(S._appe, argument="required", rest=True),
    "LIST": _spec(S._list),
    "NLST": _spec(S._nlst),
    "MLSD": _spec(S._mlsd),
}
del S
