"""The command table: which verbs exist, their rules, and what each one does.

A handler takes the session and the command's argument and returns a
:class:`~.replies.Reply` (answered at once) or a :class:`~.requests.Request`
(the I/O layer carries it out; the session turns its outcome into the
reply). Whether a verb needs a login, takes an argument or keeps a pending
REST is data in :data:`COMMANDS`, checked by the session before the handler
runs; handlers decide only what the command means.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

from ftp_cluster.worker.protocol import listing
from ftp_cluster.worker.protocol.addresses import normalise_host, parse_eprt, parse_port
from ftp_cluster.worker.protocol.paths import ROOT
from ftp_cluster.worker.protocol.replies import Reply
from ftp_cluster.worker.protocol.requests import (
    Abort,
    Authenticate,
    Close,
    DataEndpoint,
    FileChange,
    FileQuery,
    ListPath,
    OpenPassive,
    QuotaQuery,
    Request,
    StartTLS,
    Transfer,
    TransferKind,
)

if TYPE_CHECKING:
    from ftp_cluster.worker.protocol.session import Session

__all__ = ["COMMANDS", "FEATURES", "CommandSpec", "quote_path"]

Step = Reply | Request
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
    "MFMT",
    "MLST type*;size*;modify*;create*;perm*;unique*;",
    "PASV",
    "REST STREAM",
    "SIZE",
    "TVFS",
    "UTF8",
)

_TLS_FEATURES = ("AUTH TLS", "PBSZ", "PROT")
_OK = Reply.of(200, "ok")
_TYPE_SET = {kind: Reply.of(200, f"type set to {kind}") for kind in ("A", "I")}
_DENIED = Reply.of(550, "permission denied")
_NO_ENDPOINT = Reply.of(425, "use PASV, EPSV, PORT or EPRT first")
_EPSV_ONLY = Reply.of(503, "EPSV ALL is in effect: use EPSV")
#: The name STOU tries first when the client suggests none.
STOU_NAME = "ftp-upload"


def quote_path(path: PurePosixPath) -> str:
    """RFC 959 quoting for 257 replies: embedded double quotes are doubled."""
    return '"' + str(path).replace('"', '""') + '"'


# -- access control -------------------------------------------------------------

_TLS_FOR_LOGIN = Reply.of(530, "log in over TLS: send AUTH TLS first")


def _user(s: Session, login: str) -> Step:
    if s.options.tls_required != "none" and not s.protected:
        if s.options.on_login_refused is not None:
            s.options.on_login_refused("tls_required")  # PASS then is no second attempt
        return _TLS_FOR_LOGIN
    if s.user is not None:
        return s.relogin(login)
    return s.begin_login(login)


def _pass(s: Session, password: str) -> Step:
    if s.options.tls_required != "none" and not s.protected:
        return _TLS_FOR_LOGIN
    if s.user is not None:
        return Reply.of(503, "already logged in")
    if not s.awaiting_password:
        return Reply.of(503, "send USER first")
    return Authenticate(s.login_name, password)


def _quit(s: Session, _: str) -> Step:
    return Close()


# -- FTPS (RFC 4217, RFC 2228) -----------------------------------------------------

_MECHANISMS = frozenset({"TLS", "SSL", "TLS-C", "TLS-P"})


def _auth(s: Session, mechanism: str) -> Step:
    if not s.options.tls:
        return Reply.of(502, "TLS is not configured on this server")
    if s.protected:
        return Reply.of(503, "the control connection is already protected")
    if mechanism.upper() not in _MECHANISMS:
        return Reply.of(504, f"security mechanism {mechanism!r} not understood, use TLS")
    return StartTLS()


def _pbsz(s: Session, argument: str) -> Step:
    if not s.protected:
        return Reply.of(503, "send AUTH TLS first")
    s.pbsz = True
    # TLS is a stream: the buffer size is always 0 (RFC 4217 §9).
    return Reply.of(200, "PBSZ=0")


def _prot(s: Session, level: str) -> Step:
    if not s.pbsz:
        return Reply.of(503, "send PBSZ first")
    match level.upper():
        case "P":
            s.protect_data = True
            return Reply.of(200, "data connections protected (TLS)")
        case "C":
            if s.options.tls_required == "all":
                return Reply.of(534, "data connections must be protected here (PROT P)")
            s.protect_data = False
            return Reply.of(200, "data connections in the clear")
        case "S" | "E":
            return Reply.of(536, f"protection level {level.upper()} not supported")
    return Reply.of(504, f"protection level {level!r} not understood")


# -- informational ----------------------------------------------------------------


def _noop(s: Session, _: str) -> Step:
    return _OK


def _syst(s: Session, _: str) -> Step:
    return Reply.of(215, s.options.system_type)


def _feat(s: Session, _: str) -> Step:
    features = sorted((*FEATURES, *_TLS_FEATURES)) if s.options.tls else FEATURES
    return Reply(211, ("features:", *features, "end"))


def _opts(s: Session, argument: str) -> Step:
    option, _, value = argument.partition(" ")
    if option.upper() in ("UTF8", "UTF-8"):
        return Reply.of(200, "always in UTF8 mode")
    if option.upper() == "MLST":
        wanted = {fact.lower() for fact in value.split(";") if fact}
        s.mlst_facts = tuple(f for f in listing.FACTS if f in wanted)
        return Reply.of(200, "MLST OPTS " + "".join(f"{f};" for f in s.mlst_facts))
    return Reply.of(501, "option not understood")


def _type(s: Session, argument: str) -> Step:
    kind = argument.upper().split()[0]
    if kind not in ("A", "I", "L"):
        return Reply.of(504, f"type {argument} not supported")
    s.transfer_type = "A" if kind == "A" else "I"
    return _TYPE_SET[s.transfer_type]


def _mode(s: Session, argument: str) -> Step:
    if argument.upper() == "S":
        return Reply.of(200, "mode set to S")
    return Reply.of(504, "only stream mode is supported")


def _stru(s: Session, argument: str) -> Step:
    if argument.upper() == "F":
        return Reply.of(200, "structure set to F")
    return Reply.of(504, "only file structure is supported")


def _allo(s: Session, _: str) -> Step:
    return Reply.of(202, "no storage allocation necessary")


def _stat(s: Session, argument: str) -> Step:
    if argument:
        # STAT of a path: a LIST over the control connection (RFC 959).
        path = s.path(_without_options(argument))
        if not s.can_read(path):
            return _DENIED
        return ListPath("STAT", path)
    if s.has_quota:
        return QuotaQuery("STAT")  # the reply gets a quota line
    return s.status()


def _site(s: Session, argument: str) -> Step:
    command, _, _ = argument.partition(" ")
    if command.upper() != "QUOTA":
        return Reply.of(504, f"SITE {command} not understood (SITE QUOTA is)")
    if not s.has_quota:
        return Reply.of(200, "quota: none (unlimited)")
    return QuotaQuery("SITE")


def _help(s: Session, _: str) -> Step:
    return Reply(214, ("commands:", " ".join(sorted(COMMANDS)), "end"))


# -- navigation -------------------------------------------------------------------


def _pwd(s: Session, _: str) -> Step:
    return Reply.of(257, f"{quote_path(s.cwd)} is the current directory")


def _cwd(s: Session, argument: str) -> Step:
    path = s.path(argument)
    if not s.can_read(path):
        return _DENIED
    return FileQuery("CWD", path)


def _cdup(s: Session, _: str) -> Step:
    return _cwd(s, "..")


def _query(s: Session, argument: str, *, verb: Literal["SIZE", "MDTM", "MLST"]) -> Step:
    path = s.path(argument)
    if not s.can_read(path):
        return _DENIED
    return FileQuery(verb, path)


def _size(s: Session, argument: str) -> Step:
    if s.transfer_type == "A":
        # The ASCII size is only known by reading the whole file; the binary
        # size would be a wrong answer (ProFTPD refuses it too).
        return Reply.of(550, "SIZE not allowed in ASCII mode")
    return _query(s, argument, verb="SIZE")


# -- changes ------------------------------------------------------------------------


def _change(s: Session, argument: str, *, verb: Literal["MKD", "RMD", "DELE"]) -> Step:
    path = s.path(argument)
    if path == ROOT or not s.can_write(path):
        return _DENIED
    return FileChange(verb, path)


def _rnfr(s: Session, argument: str) -> Step:
    path = s.path(argument)
    if path == ROOT or not s.can_write(path):
        return _DENIED
    s.rename_from = path
    return Reply.of(350, "ready for RNTO")


def _rnto(s: Session, argument: str) -> Step:
    source, s.rename_from = s.rename_from, None
    if source is None:
        return Reply.of(503, "send RNFR first")
    target = s.path(argument)
    if target == ROOT or not s.can_write(target):
        return _DENIED
    return FileChange("RNTO", source, target)


def _mfmt(s: Session, argument: str) -> Step:
    stamp, _, name = argument.partition(" ")
    mtime = _time_val(stamp)
    if mtime is None or not name:
        return Reply.of(501, "usage: MFMT YYYYMMDDHHMMSS path (UTC)")
    path = s.path(name)
    if path == ROOT or not s.can_write(path):
        return _DENIED
    return FileChange("MFMT", path, mtime=mtime)


def _time_val(text: str) -> float | None:
    """RFC 3659 time-val (``YYYYMMDDHHMMSS[.sss]``, UTC) as a timestamp."""
    whole, _, fraction = text.partition(".")
    if len(whole) != 14 or not whole.isdigit() or (fraction and not fraction.isdigit()):
        return None
    try:
        parsed = time.strptime(whole, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return calendar.timegm(parsed) + (float(f"0.{fraction}") if fraction else 0.0)


# -- data connections -----------------------------------------------------------


def _pasv(s: Session, _: str) -> Step:
    if s.epsv_all:
        return _EPSV_ONLY
    if s.passive_is_ipv4_only:
        return Reply.of(522, "PASV is IPv4 only here, use EPSV")
    return OpenPassive(extended=False, protected=s.protect_data)


def _epsv(s: Session, argument: str) -> Step:
    if argument.upper() == "ALL":
        # RFC 2428 §4: from now on only EPSV may set up data connections.
        s.epsv_all = True
        return Reply.of(200, "EPSV ALL accepted")
    if argument and argument not in ("1", "2"):
        return Reply.of(522, "network protocol not supported, use (1,2)")
    return OpenPassive(extended=True, protected=s.protect_data)


def _port(s: Session, argument: str) -> Step:
    return _active_from(s, parse_port(argument), "PORT")


def _eprt(s: Session, argument: str) -> Step:
    return _active_from(s, parse_eprt(argument), "EPRT")


def _active_from(s: Session, address: tuple[str, int] | None, verb: str) -> Step:
    if s.epsv_all:
        return _EPSV_ONLY
    if address is None:
        return Reply.of(501, f"syntax error in {verb} arguments")
    return _active(s, *address)


def _active(s: Session, host: str, port: int) -> Step:
    # FTP bounce: a data connection may only go back to the client itself.
    if normalise_host(host) != s.peer:
        return Reply.of(504, "data connections go to your own address only")
    if not 1024 <= port <= 65535:
        return Reply.of(504, "refusing privileged or invalid data port")
    s.endpoint = DataEndpoint(passive=False, host=host, port=port)
    return Reply.of(200, "active data connection accepted")


def _rest(s: Session, argument: str) -> Step:
    if not argument.isdigit():
        return Reply.of(501, "REST needs a non-negative byte offset")
    s.rest = int(argument)
    return Reply.of(350, f"restarting at {s.rest}, send RETR or STOR")


def _abor(s: Session, _: str) -> Step:
    return Abort()  # nothing runs (a running transfer's ABOR never gets here)


# -- transfers --------------------------------------------------------------------


def _transfer(s: Session, kind: TransferKind, path: PurePosixPath, *, upload: bool) -> Step:
    allowed = s.can_write(path) if upload else s.can_read(path)
    offset, s.rest = s.rest, 0
    if not allowed:
        return _DENIED
    if s.endpoint is None:
        return _NO_ENDPOINT
    if not _data_protection_ok(s):
        return _PROT_P_REQUIRED
    ascii = s.transfer_type == "A"
    return Transfer(kind, path, s.endpoint, offset, ascii=ascii, protected=s.protect_data)


_PROT_P_REQUIRED = Reply.of(522, "data connections must be protected here: send PROT P")


def _data_protection_ok(s: Session) -> bool:
    return s.protect_data or s.options.tls_required != "all"


def _file(s: Session, argument: str, *, kind: Literal["RETR", "STOR", "APPE"]) -> Step:
    return _transfer(s, kind, s.path(argument), upload=kind != "RETR")


def _stou(s: Session, argument: str) -> Step:
    # RFC 959 STOU takes no argument; a name some clients send is only a
    # suggestion, and never a path.
    name = PurePosixPath(argument).name if argument else ""
    if name in ("", ".", ".."):
        name = STOU_NAME
    if not s.can_write(s.cwd / name):
        s.rest = 0
        return _DENIED
    return _transfer(s, "STOU", s.cwd / name, upload=True)


def _without_options(argument: str) -> str:
    # Clients send ls options ("LIST -la"); they select nothing here.
    return " ".join(word for word in argument.split(" ") if word and not word.startswith("-"))


def _listing(s: Session, argument: str, *, kind: Literal["LIST", "NLST", "MLSD"]) -> Step:
    path = s.path(argument if kind == "MLSD" else _without_options(argument))
    if not s.can_read(path):
        return _DENIED
    if s.endpoint is None:
        return _NO_ENDPOINT
    if not _data_protection_ok(s):
        return _PROT_P_REQUIRED
    return ListPath(kind, path)


def _spec(
    handler: Handler, *, login: bool = True, argument: Argument = "optional", rest: bool = False
) -> CommandSpec:
    return CommandSpec(handler, login=login, argument=argument, keeps_rest=rest)


#: The only place that says which verbs exist and their rules.
COMMANDS: dict[str, CommandSpec] = {
    "USER": _spec(_user, login=False, argument="required"),
    "PASS": _spec(_pass, login=False),
    "QUIT": _spec(_quit, login=False),
    "AUTH": _spec(_auth, login=False, argument="required"),
    "PBSZ": _spec(_pbsz, login=False, argument="required"),
    "PROT": _spec(_prot, login=False, argument="required"),
    "NOOP": _spec(_noop, login=False),
    "SYST": _spec(_syst, login=False),
    "FEAT": _spec(_feat, login=False),
    "OPTS": _spec(_opts, login=False, argument="required"),
    "HELP": _spec(_help, login=False),
    "TYPE": _spec(_type, argument="required"),
    "MODE": _spec(_mode, argument="required"),
    "STRU": _spec(_stru, argument="required"),
    "ALLO": _spec(_allo),
    "STAT": _spec(_stat),
    "SITE": _spec(_site, argument="required"),
    "PWD": _spec(_pwd, argument="none"),
    "XPWD": _spec(_pwd, argument="none"),
    "CWD": _spec(_cwd),
    "XCWD": _spec(_cwd),
    "CDUP": _spec(_cdup, argument="none"),
    "XCUP": _spec(_cdup, argument="none"),
    "SIZE": _spec(_size, argument="required"),
    "MDTM": _spec(partial(_query, verb="MDTM"), argument="required"),
    "MLST": _spec(partial(_query, verb="MLST")),
    "MFMT": _spec(_mfmt, argument="required"),
    "MKD": _spec(partial(_change, verb="MKD"), argument="required"),
    "XMKD": _spec(partial(_change, verb="MKD"), argument="required"),
    "RMD": _spec(partial(_change, verb="RMD"), argument="required"),
    "XRMD": _spec(partial(_change, verb="RMD"), argument="required"),
    "DELE": _spec(partial(_change, verb="DELE"), argument="required"),
    "RNFR": _spec(_rnfr, argument="required"),
    "RNTO": _spec(_rnto, argument="required"),
    "PASV": _spec(_pasv, argument="none"),
    "EPSV": _spec(_epsv),
    "PORT": _spec(_port, argument="required"),
    "EPRT": _spec(_eprt, argument="required"),
    "REST": _spec(_rest, argument="required", rest=True),
    "ABOR": _spec(_abor, login=False),
    "RETR": _spec(partial(_file, kind="RETR"), argument="required", rest=True),
    "STOR": _spec(partial(_file, kind="STOR"), argument="required", rest=True),
    "STOU": _spec(_stou),
    "APPE": _spec(partial(_file, kind="APPE"), argument="required", rest=True),
    "LIST": _spec(partial(_listing, kind="LIST")),
    "NLST": _spec(partial(_listing, kind="NLST")),
    "MLSD": _spec(partial(_listing, kind="MLSD")),
}
