"""The FTP session as a state machine that owns its bytes: bytes in, events out.

No sockets, no asyncio, no file system. The I/O layer feeds what the control
connection received to :meth:`Session.receive_data` and then asks
:meth:`Session.next_event` until it returns ``None``. An event is

* ``bytes``: replies, ready to send;
* a :class:`~.requests.Request`: something to do (a login check, a file
  query, a transfer); its :class:`~.requests.Outcome` goes back through
  :meth:`Session.complete`, and ``next_event`` then yields the reply;
* a :class:`~.requests.Signal`: cancel the running transfer, or hang up.

At most one request runs at a time; the session does not read further
commands until it completes (``next_event`` returns ``None`` meanwhile), so
the I/O layer cannot run two at once. While a transfer runs, ABOR, STAT and
QUIT are still read and answered, as RFC 959 §4.1.3 asks; other commands
wait their turn. Framing, the line-length limit, Telnet handling and every
reply code and text are decided here, including the replies the I/O layer
only triggers: refusal at connect, shutdown and idle timeout (421).

Which commands exist and their rules is data (:data:`.verbs.COMMANDS`).
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

from ftp_cluster.shared.limits.base import Refusal
from ftp_cluster.shared.users import User, UserTable
from ftp_cluster.worker.protocol import listing
from ftp_cluster.worker.protocol.addresses import is_ipv6, normalise_host, pasv_numbers
from ftp_cluster.worker.protocol.commands import Command, CommandError, parse_command
from ftp_cluster.worker.protocol.files import FileInfo, Listing
from ftp_cluster.worker.protocol.framing import OVERLONG, LineReader, Overlong
from ftp_cluster.worker.protocol.paths import ROOT, resolve
from ftp_cluster.worker.protocol.replies import Reply
from ftp_cluster.worker.protocol.requests import (
    Abort,
    Authenticate,
    Close,
    DataEndpoint,
    Done,
    Event,
    Failed,
    Failure,
    FileChange,
    FileQuery,
    ListPath,
    Logout,
    OpenPassive,
    Outcome,
    QuotaQuery,
    QuotaStatus,
    Request,
    Signal,
    StartTLS,
    Transfer,
)
from ftp_cluster.worker.protocol.verbs import COMMANDS, quote_path

__all__ = ["Phase", "ProtocolMisuse", "Session", "SessionOptions", "Step", "failure_reply"]

log = logging.getLogger("ftp_cluster.worker")

Step = Reply | Request


class Phase(enum.Enum):
    CONNECTING = "connecting"  # waiting for admission; received bytes are kept
    AWAIT_USER = "await-user"
    AWAIT_PASS = "await-pass"
    LOGGED_IN = "logged-in"
    CLOSED = "closed"


class ProtocolMisuse(RuntimeError):
    """The I/O layer broke the contract (completed a request that was not running)."""


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """What a session needs to know of its server (shared by all sessions)."""

    users: UserTable
    welcome_message: str = "ftp-cluster ready"
    system_type: str = "UNIX Type: L8"
    max_line_length: int = 4096
    masquerade_address: str | None = None  # announced in PASV replies
    #: FTPS (RFC 4217): whether AUTH TLS is offered, and what it is required for:
    #: "none", "control" (before USER/PASS) or "all" (control and every data
    #: connection, PROT P).
    tls: bool = False
    tls_required: Literal["none", "control", "all"] = "none"
    #: The disk quota of users without their own (``[server] default_quota_*``).
    default_quota_bytes: int | None = None
    default_quota_files: int | None = None
    #: Told of a login the core refuses by itself (``"tls_required"``: USER
    #: before AUTH TLS), so that it is counted like the others.
    on_login_refused: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    greeting: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Every session sends it: encoded once per server, not once per session.
        object.__setattr__(self, "greeting", Reply.of(220, self.welcome_message).encode())


_FAILURE_CODES: dict[Failure, int] = {
    Failure.IO_ERROR: 451,
    Failure.TIMEOUT: 451,
    Failure.UNAVAILABLE: 421,
    Failure.NO_PASSIVE_PORT: 425,
    Failure.NO_DATA_CONNECTION: 425,
    Failure.DATA_NOT_PROTECTED: 522,
    Failure.CONNECTION_LOST: 426,
    Failure.ABORTED: 426,
    Failure.BAD_PASSWORD: 530,
    Failure.UNKNOWN_USER: 530,
    Failure.USER_LIMIT: 530,
    Failure.QUOTA_EXCEEDED: 552,
    Failure.QUOTA_UNAVAILABLE: 452,
}
#: Failures whose reply must not tell them apart (a login probe learns nothing).
_SAME_TEXT = {Failure.UNKNOWN_USER: Failure.BAD_PASSWORD.value}


def failure_reply(failed: Failed) -> Reply:
    """The reply for a failed request; file-system refusals are 550."""
    code = _FAILURE_CODES.get(failed.reason, 550)
    text = _SAME_TEXT.get(failed.reason, failed.reason.value)
    return Reply.of(code, f"{text}: {failed.detail}" if failed.detail else text)


# Replies every session sends, encoded once (replies are immutable values).
_LOGGED_IN = Reply.of(230, "login successful")
_PASSWORD_REQUIRED = Reply.of(331, "password required")
_GOODBYE = Reply.of(221, "goodbye")
_TRANSFER_COMPLETE = Reply.of(226, "transfer complete")
_ABORT_DONE = Reply.of(226, "abort successful").encode()
_SHUTDOWN = Reply.of(421, "server shutting down").encode()
_AUTH_OK = Reply.of(234, "AUTH TLS successful, start the handshake").encode()
_IDLE = Reply.of(421, "idle timeout, closing control connection").encode()
_REFUSALS = {refusal: Reply.of(421, refusal.value).encode() for refusal in Refusal}


class Session:
    """One control connection's protocol state.

    ``peer`` is the client's address (data connections may only go back to
    it), ``local`` the address the client connected to (announced in PASV
    replies unless the server masquerades).
    """

    __slots__ = (
        "_abort_requested",
        "_held",
        "_held_bytes",
        "_login",
        "_out",
        "_quit_requested",
        "_reader",
        "_relogin",
        "_running",
        "_shutdown_requested",
        "cwd",
        "endpoint",
        "epsv_all",
        "local",
        "mlst_facts",
        "options",
        "pbsz",
        "peer",
        "phase",
        "protect_data",
        "protected",
        "rename_from",
        "rest",
        "transfer_type",
        "user",
    )

    def __init__(
        self,
        options: SessionOptions,
        peer: str = "127.0.0.1",
        local: str = "127.0.0.1",
        *,
        implicit_tls: bool = False,
    ) -> None:
        self.options = options
        self.peer = normalise_host(peer)
        self.local = normalise_host(local)
        self.phase = Phase.CONNECTING
        self.user: User | None = None
        self.cwd = ROOT
        self.rest = 0
        self.rename_from: PurePosixPath | None = None
        self.endpoint: DataEndpoint | None = None
        self.transfer_type = "I"
        self.mlst_facts: tuple[str, ...] = listing.FACTS
        self.epsv_all = False
        # FTPS: the control connection runs TLS (after AUTH, or from the first
        # byte on the implicit port); PBSZ seen; data connections protected
        # (PROT P; implicit FTPS protects them unless PROT C).
        self.protected = implicit_tls
        self.pbsz = implicit_tls
        self.protect_data = implicit_tls
        self._reader = LineReader(options.max_line_length)
        # A list, not a deque: it rarely holds more than two events, and an
        # empty deque costs ~600 bytes per idle session.
        self._out: list[Event] = []
        self._running: Request | None = None
        # Lines that came during a transfer; made when the first one does.
        self._held: deque[bytes | Overlong] | None = None
        self._held_bytes = 0
        self._login = ""  # the name given to USER, until PASS
        self._relogin: str | None = None  # USER on a logged-in session, after Logout
        self._abort_requested = False
        self._quit_requested = False
        self._shutdown_requested = False

    # -- the connection's life ------------------------------------------------

    def admitted(self) -> None:
        """The connection may go on: greet, then read the commands received so far."""
        if self.phase is Phase.CONNECTING:
            self.phase = Phase.AWAIT_USER
            self._out.append(self.options.greeting)

    def refused(self, refusal: Refusal) -> None:
        """The connection is refused at connect (a limit, or the limits back end down)."""
        self._hang_up(_REFUSALS[refusal])

    def shutdown(self, *, now: bool = False) -> None:
        """The server stops: 421 now if idle (or ``now``), else once the running request ends."""
        if self._running is None or now:
            self._hang_up(_SHUTDOWN)
        else:
            self._shutdown_requested = True

    def timed_out(self) -> None:
        """Idle for too long (the I/O layer never calls this while a request runs)."""
        self._hang_up(_IDLE)

    def _hang_up(self, reply: bytes) -> None:
        """Say ``reply`` and hang up now, whatever was still to be said or done."""
        if self.phase is Phase.CLOSED:
            return
        self._running = None
        self._out.clear()
        self._out.append(reply)
        self._close_after_replies()

    @property
    def busy(self) -> bool:
        """A request is running (a transfer, a login check...): not idle."""
        return self._running is not None

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def backlog(self) -> int:
        """Bytes received and not yet acted on; the I/O layer stops reading past a bound."""
        return self._reader.buffered + self._held_bytes

    # -- bytes in, events out ---------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Take bytes received on the control connection (nothing is done yet)."""
        if self.phase is not Phase.CLOSED:
            self._reader.feed(data)

    def next_event(self) -> Event | None:
        """The next thing to do, or ``None``: more bytes are needed, or a request runs."""
        out = self._out
        if not out:
            running = self._running
            if running is not None:
                if type(running) is Transfer and not self._quit_requested:
                    self._read_interrupts(running)
                if not out:
                    return None
            elif self.phase is Phase.CONNECTING or self.phase is Phase.CLOSED:
                return None
            else:
                line = self._next_line()
                if line is None:
                    return None
                step = self._line(line)
                if type(step) is Reply:
                    return step.encode()
                assert isinstance(step, Request)
                if type(step) is StartTLS:
                    # Whatever came in the clear after AUTH is not a command:
                    # it may be injected (CVE-2011-0411). From the handshake on,
                    # the I/O layer hands over only what came over TLS.
                    self._reader = LineReader(self.options.max_line_length)
                    # The 234 goes out in the clear, then the handshake starts.
                    out.append(step)
                    return _AUTH_OK
                self._running = step
                return step
        event = out.pop(0)
        if isinstance(event, Request):
            self._running = event
        return event

    def _next_line(self) -> bytes | Overlong | None:
        if self._held:
            line = self._held.popleft()
            self._held_bytes -= len(line) if isinstance(line, bytes) else 0
            return line
        return self._reader.next_line()

    def _line(self, line: bytes | Overlong) -> Step:
        if line is OVERLONG:
            limit = self.options.max_line_length
            return Reply.of(500, f"command line too long (over {limit} bytes)")
        assert isinstance(line, bytes)
        try:
            command = parse_command(line)
        except CommandError as error:
            return Reply.of(500, str(error))
        return self._handle(command)

    def _handle(self, command: Command) -> Step:
        spec = COMMANDS.get(command.verb)
        if log.isEnabledFor(logging.DEBUG):
            # Not the argument of an unknown verb: a mangled "PASS" is one.
            log.debug("command: %s", command.redacted() if spec else f"{command.verb} (unknown)")
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

    def _read_interrupts(self, transfer: Transfer) -> None:
        """Read what came during ``transfer``: ABOR, STAT, QUIT act now, the rest waits."""
        reader, out = self._reader, self._out
        while (line := reader.next_line()) is not None:
            verb, argument = _verb(line)
            if verb == "ABOR" and not self._abort_requested:
                self._abort_requested = True
                out.append(Signal.CANCEL)
            elif verb == "STAT" and not argument:
                out.append(self._transfer_status(transfer).encode())
            elif verb == "QUIT":
                # The transfer's own reply comes first, then goodbye (RFC 959
                # QUIT); anything sent after QUIT is moot.
                self._quit_requested = True
                self._held = None
                self._held_bytes = 0
                return
            else:
                if self._held is None:
                    self._held = deque()
                self._held.append(line)
                self._held_bytes += len(line) if isinstance(line, bytes) else 0

    def _transfer_status(self, transfer: Transfer) -> Reply:
        kind = "ASCII" if transfer.ascii else "binary"
        moved = transfer.progress.moved
        return Reply(
            213,
            (
                "status of the running transfer:",
                f"{transfer.kind} {transfer.path} ({kind}): {moved} bytes so far",
                "end",
            ),
        )

    # -- outcomes ------------------------------------------------------------------

    def complete(self, request: Request, outcome: Outcome) -> None:
        """``request`` (the running one) has finished with ``outcome``."""
        if self.phase is Phase.CLOSED:
            return  # hung up meanwhile (a fast stop): nothing more to say
        if request is not self._running:
            raise ProtocolMisuse(f"{request!r} is not the running request")
        self._running = None
        out = self._out
        if type(request) is StartTLS:
            self._tls_started(outcome)
            return
        step = self._failed(request, outcome) if type(outcome) is Failed else None
        if step is None:
            assert type(outcome) is Done
            step = self._done(request, outcome)
        follow: Request | None = None
        if isinstance(step, Reply):
            out.append(step.encode())
            if step.code == 421 or type(request) is Close:
                # RFC 959: 421 and 221 close the control connection.
                self._close_after_replies()
                return
        else:
            follow = step
        if type(request) is Transfer and self._abort_requested:
            self._abort_requested = False
            out.append(_ABORT_DONE)  # after the transfer's own 426 (or 226)
        if self._quit_requested:
            self._quit_requested = False
            out.append(Close())
        elif self._shutdown_requested:
            out.append(_SHUTDOWN)
            self._close_after_replies()
        elif follow is not None:
            out.append(follow)  # the next step of the same command

    def _tls_started(self, outcome: Outcome) -> None:
        if type(outcome) is Failed:
            # A failed handshake leaves nothing to talk on.
            self._running = None
            self._out.clear()
            self._close_after_replies()
            return
        self.protected = True
        if self._shutdown_requested:
            self._out.append(_SHUTDOWN)
            self._close_after_replies()

    def _close_after_replies(self) -> None:
        self.phase = Phase.CLOSED
        self._held = None
        self._out.append(Signal.HANGUP)

    def opening(self, transfer: Transfer, name: str | None = None) -> bytes:
        """The 150 reply, once the file is open and before the data connection.

        ``name`` is the file STOU created (RFC 1123 §4.1.2.9 puts it in the reply).
        """
        if name is not None:
            return Reply.of(150, f"FILE: {name}").encode()
        kind = "ASCII" if transfer.ascii else "BINARY"
        return Reply.of(150, f"opening {kind} mode data connection for {transfer.path}").encode()

    def _failed(self, request: Request, outcome: Failed) -> Step:
        match request:
            case Authenticate():
                self.phase, self.user = Phase.AWAIT_USER, None
            case Transfer() | ListPath() | Abort():
                self.endpoint = None
            case Logout():
                return self._after_logout()
            case Close():
                return _GOODBYE
        return failure_reply(outcome)

    def _done(self, request: Request, outcome: Done) -> Step:
        match request:
            case Authenticate():
                user = outcome.value
                assert isinstance(user, User)
                self.phase, self.user, self.cwd = Phase.LOGGED_IN, user, user.home_path
                return _LOGGED_IN
            case Logout():
                return self._after_logout()
            case FileQuery():
                return self._query_done(request, outcome.value)
            case FileChange():
                return self._change_done(request)
            case ListPath():
                return self._listed(request, outcome.value)
            case OpenPassive(extended=extended):
                return self._passive_done(extended, outcome.value)
            case Transfer():
                self.endpoint = None
                return _TRANSFER_COMPLETE
            case Abort():
                self.endpoint = None
                return Reply.of(226, "abort successful")
            case QuotaQuery():
                return self._quota_done(request, outcome.value)
            case Close():
                return _GOODBYE
        raise ProtocolMisuse(f"unknown request {request!r}")

    def _quota_done(self, request: QuotaQuery, status: object) -> Reply:
        assert isinstance(status, QuotaStatus)
        if request.verb == "SITE":
            return Reply.of(200, status.line())
        return self.status(status.line())

    def status(self, *extra: str) -> Reply:
        """STAT without argument: who, TYPE, no transfer, and ``extra`` lines."""
        who = self.user.key if self.user is not None else "nobody"
        kind = "ASCII" if self.transfer_type == "A" else "binary"
        return Reply(
            211, ("status:", f"logged in as {who}", f"TYPE {kind}", *extra, "no transfer", "end")
        )

    @property
    def has_quota(self) -> bool:
        """The logged-in user has a disk quota (its usage is tallied)."""
        options = self.options
        return (
            self.user is not None
            and not self.user.quota_limits(
                options.default_quota_bytes, options.default_quota_files
            ).unlimited
        )

    def _after_logout(self) -> Step:
        login, self._relogin = self._relogin, None
        return self.begin_login(login or "")

    def _query_done(self, request: FileQuery, info: object) -> Reply:
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
            case "MFMT":
                assert request.mtime is not None
                stamp = listing.modify_time(request.mtime)
                return Reply.of(213, f"Modify={stamp}; {request.path}")
        return Reply.of(250, f"{request.verb} successful")

    def _listed(self, request: ListPath, found: object) -> Step:
        assert isinstance(found, Listing)
        if request.kind == "MLSD" and not found.here.is_dir:
            self.endpoint = None
            return Reply.of(550, "not a directory")
        lines = listing.render(request.kind, request.path, found, self.rights, self.mlst_facts)
        if request.kind == "STAT":
            return Reply(213, (f"status of {request.path}:", *lines, "end"))
        if self.endpoint is None:  # cannot happen: checked before listing
            return Reply.of(425, "use PASV, EPSV, PORT or EPRT first")
        payload = listing.join_lines(lines)
        return Transfer(
            request.kind,
            request.path,
            self.endpoint,
            protected=self.protect_data,
            payload=payload,
        )

    def _passive_done(self, extended: bool, port: object) -> Reply:
        assert isinstance(port, int)
        self.endpoint = DataEndpoint(passive=True)
        if extended:
            return Reply.of(229, f"entering extended passive mode (|||{port}|)")
        numbers = pasv_numbers(self.announced_address, port)
        return Reply.of(227, f"entering passive mode ({numbers})")

    # -- helpers for the command handlers -------------------------------------

    @property
    def announced_address(self) -> str:
        """The address PASV replies name."""
        return self.options.masquerade_address or self.local

    @property
    def passive_is_ipv4_only(self) -> bool:
        return is_ipv6(self.announced_address)

    def path(self, argument: str) -> PurePosixPath:
        return resolve(self.cwd, argument)

    def can_read(self, path: PurePosixPath) -> bool:
        return self.user is not None and self.user.permission_for(path).readable

    def can_write(self, path: PurePosixPath) -> bool:
        return self.user is not None and self.user.permission_for(path).writable

    def rights(self, path: PurePosixPath) -> tuple[bool, bool]:
        if self.user is None:
            return False, False
        permission = self.user.permission_for(path)
        return permission.readable, permission.writable

    def facts(self, path: PurePosixPath, info: FileInfo) -> str:
        readable, writable = self.rights(path)
        return listing.mlsx_facts(
            info, readable=readable, writable=writable, wanted=self.mlst_facts
        )

    def begin_login(self, login: str) -> Step:
        """USER ``login`` on a session that is not logged in."""
        self.user, self.cwd, self.endpoint = None, ROOT, None
        candidate = self.options.users.find(login)
        self._login = login
        if candidate is not None and candidate.password is None and candidate.password_hash is None:
            self.phase = Phase.AWAIT_PASS
            return Authenticate(login, None)
        # Unknown logins are asked for a password too: the reply to PASS is
        # the same either way, so logins cannot be probed.
        self.phase = Phase.AWAIT_PASS
        return _PASSWORD_REQUIRED

    def relogin(self, login: str) -> Step:
        """USER ``login`` on a logged-in session: log out first."""
        self._relogin = login
        self.phase, self.user, self.endpoint = Phase.AWAIT_USER, None, None
        return Logout()

    @property
    def awaiting_password(self) -> bool:
        return self.phase is Phase.AWAIT_PASS

    @property
    def login_name(self) -> str:
        """The name given to USER (what PASS authenticates)."""
        return self._login


def _verb(line: bytes | Overlong) -> tuple[str, str]:
    """The verb and argument of a line read during a transfer ("" if it is none)."""
    if line is OVERLONG:
        return "", ""
    assert isinstance(line, bytes)
    try:
        command = parse_command(line)
    except CommandError:
        return "", ""
    return command.verb, command.argument
