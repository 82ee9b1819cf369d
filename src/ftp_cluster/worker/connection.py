"""One control connection: framing, dispatch to the protocol core, requests.

A plain :class:`asyncio.Protocol` rather than streams: an idle session costs
one small object, no task and no stream buffers. Commands whose reply needs no
I/O are answered inside ``data_received``; the others (requests) run one at a
time while further commands wait in the buffer (ABOR excepted, which
interrupts a running transfer). A request starts inline and becomes a task
only if it has to wait (:mod:`.eager`): with in-process limits a whole
session, admission to QUIT, runs without a single task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

from ftp_cluster.shared.limits.base import Refusal
from ftp_cluster.shared.users import User
from ftp_cluster.worker.context import WorkerContext
from ftp_cluster.worker.datachannel import NoFreePort, PassiveListener
from ftp_cluster.worker.filesystem import UserFileSystem
from ftp_cluster.worker.protocol.commands import CommandError, parse_command
from ftp_cluster.worker.protocol.replies import Reply
from ftp_cluster.worker.protocol.requests import (
    Abort,
    Authenticate,
    Close,
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
)
from ftp_cluster.worker.protocol.session import Session, normalise_host
from ftp_cluster.worker.throttle import ConnectionBuckets, throttle_for
from ftp_cluster.worker.transfer import TransferJob

__all__ = ["ControlConnection"]

log = logging.getLogger("ftp_cluster.worker")

#: Unread commands kept while a request runs, before reading is paused.
_MAX_QUEUED = 64 * 1024
_ABORT = b"ABOR"
#: Telnet IP and Synch bytes that clients send ahead of an urgent ABOR.
_TELNET = b"\xff\xf4\xf2 "


class ControlConnection(asyncio.Protocol):
    """The asyncio side of one FTP session."""

    __slots__ = (
        "_aborting",
        "_buckets",
        "_buffer",
        "_busy",
        "_discarding",
        "_fs",
        "_last_activity",
        "_local_host",
        "_passive",
        "_paused",
        "_peer",
        "_quit_when_idle",
        "_runner",
        "_transfer",
        "_transport",
        "admitted",
        "closing",
        "ctx",
        "session",
        "session_id",
    )

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.session_id = ctx.next_session_id()
        self.session: Session | None = None
        self.admitted = False
        self.closing = False
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._discarding = False
        self._busy = False
        self._paused = False
        self._aborting = False
        self._quit_when_idle = False
        self._runner: asyncio.Task[None] | None = None
        self._transfer: asyncio.Task[Outcome] | None = None
        self._passive: PassiveListener | None = None
        self._buckets: ConnectionBuckets | None = None
        self._fs: UserFileSystem | None = None
        self._last_activity = time.monotonic()
        self._peer = ""
        self._local_host = ""

    # -- asyncio callbacks --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._peer = normalise_host(transport.get_extra_info("peername")[0])
        self._local_host = transport.get_extra_info("sockname")[0]
        if self.ctx.draining:
            self._close(Reply.of(421, "server shutting down"))
            return
        self.ctx.connections.add(self)
        self._runner = self.ctx.start(self._admit())

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self._buffer += data
        self._last_activity = time.monotonic()
        if not self.admitted:
            self._limit_buffer()
            return
        if self._busy:
            if self._transfer is not None:
                self._take_abort()
            self._limit_buffer()
            return
        self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.ctx.connections.discard(self)
        if self._passive is not None:
            self._passive.close()
        if self._transfer is not None:
            self._transfer.cancel()
        # A running request (admission, login) finishes first and releases
        # afterwards, so a slot taken late is never left behind.
        if self._runner is None or self._runner.done():
            self._spawn_release()

    def _spawn_release(self) -> None:
        if self.admitted:
            self.admitted = False
            self.ctx.start(self.ctx.limits.leases.release(self.session_id))

    def pause_writing(self) -> None:
        # A client that does not read its replies gets no more of them.
        self._pause_reading()

    def resume_writing(self) -> None:
        self._resume_reading()

    # -- lifecycle ----------------------------------------------------------

    async def _admit(self) -> None:
        ctx = self.ctx
        refusal = await ctx.limits.leases.admit(self.session_id, self._peer, ctx.caps)
        self.admitted = refusal is None
        if self.closing:
            self._spawn_release()
            return
        if refusal is not None:
            ctx.refused += 1
            self._close(Reply.of(421, refusal.value))
            return
        self.session = Session(ctx.options, self._peer)
        self._write(self.session.greeting())
        self._process()

    def shutdown(self) -> None:
        """Graceful stop: an idle session gets 421 now, a busy one when its request ends."""
        if self._busy:
            self._quit_when_idle = True
        else:
            self._close(Reply.of(421, "server shutting down"))

    def abort(self) -> None:
        """Fast stop: drop the connection."""
        self._close(Reply.of(421, "server shutting down"))

    def _close(self, reply: Reply | None = None) -> None:
        if self.closing or self._transport is None:
            return
        self.closing = True
        if reply is not None:
            self._transport.write(reply.encode())
        self._transport.close()

    # -- framing and dispatch -----------------------------------------------

    def _process(self) -> None:
        while not self._busy and not self.closing:
            line = self._next_line()
            if line is None:
                break
            self._dispatch(line)
        if not self._busy:
            self._resume_reading()

    def _next_line(self) -> bytes | None:
        buffer = self._buffer
        end = buffer.find(b"\n")
        if end < 0:
            limit = self.ctx.settings.max_line_length
            if len(buffer) > limit:
                if not self._discarding:
                    self._write(Reply.of(500, f"command line too long (over {limit} bytes)"))
                self._discarding = True
                buffer.clear()
            return None
        line = bytes(buffer[:end]).rstrip(b"\r")
        del buffer[: end + 1]
        if self._discarding:
            self._discarding = False
            return None if not buffer else self._next_line()
        if len(line) > self.ctx.settings.max_line_length:
            self._write(Reply.of(500, "command line too long"))
            return self._next_line()
        return line

    def _dispatch(self, line: bytes) -> None:
        assert self.session is not None
        try:
            command = parse_command(line)
        except CommandError as error:
            self._write(Reply.of(500, str(error)))
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("session %s: %s", self.session_id, command.redacted())
        step = self.session.handle(command)
        if isinstance(step, Reply):
            self._write(step)
            return
        self._busy = True
        rest = self.ctx.start(self._run(step))
        if rest is not None:
            self._runner = rest
            # The commands that wait behind the request go on when it ends.
            rest.add_done_callback(self._after_request)

    def _take_abort(self) -> None:
        """Honour an ABOR that arrived during a transfer, ahead of queued commands."""
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            line = bytes(self._buffer[start:end]).lstrip(_TELNET).upper()
            if line.startswith(_ABORT):
                del self._buffer[start : end + 1]
                self._aborting = True
                if self._transfer is not None:
                    self._transfer.cancel()
                return
            start = end + 1

    def _limit_buffer(self) -> None:
        if len(self._buffer) > _MAX_QUEUED:
            self._pause_reading()

    def _pause_reading(self) -> None:
        if not self._paused and self._transport is not None and not self.closing:
            self._paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._paused and self._transport is not None and not self.closing:
            self._paused = False
            self._transport.resume_reading()

    def _write(self, reply: Reply) -> None:
        if self._transport is not None and not self.closing:
            self._transport.write(reply.encode())

    # -- idle timeout -------------------------------------------------------

    def expire_if_idle(self, now: float, timeout: float) -> None:
        """Close with 421 if idle for ``timeout`` seconds (see :mod:`.idle`).

        A running request (a long transfer) is not idleness; a session still
        waiting for admission has no session yet to time out.
        """
        if self.session is None or self._busy or self.closing:
            return
        if now - self._last_activity >= timeout:
            self._close(Reply.of(421, "idle timeout, closing control connection"))

    # -- requests -----------------------------------------------------------

    async def _run(self, request: Request) -> None:
        assert self.session is not None
        try:
            reply = await self._execute(request)
        except Exception:
            log.exception("session %s: request %r failed", self.session_id, request)
            reply = Reply.of(451, "local error in processing")
        if reply is not None:
            self._write(reply)
        self._busy = False
        self._last_activity = time.monotonic()
        if self.closing:
            self._spawn_release()
            return
        if self._quit_when_idle:
            self._close(Reply.of(421, "server shutting down"))

    def _after_request(self, _task: asyncio.Task[None]) -> None:
        self._process()

    async def _execute(self, request: Request) -> Reply | None:
        assert self.session is not None
        match request:
            case Authenticate():
                outcome = await self._authenticate(request)
            case Logout():
                await self.ctx.limits.leases.logout(self.session_id)
                self._fs = None
                outcome = Done()
            case FileQuery():
                outcome = await self._filesystem().query(request)
            case FileChange():
                outcome = await self._filesystem().change(request)
            case OpenPassive():
                opened = self._open_passive(request)
                if isinstance(opened, Reply):
                    return opened
                outcome = opened
            case Transfer():
                outcome = await self._run_transfer(request)
                if self._aborting:
                    self._aborting = False
                    self._write(self.session.complete(request, outcome))
                    return self.session.complete(Abort(), Done())
            case Abort():
                self._close_passive()
                outcome = Done()
            case Close(reply=reply):
                await self._release()
                self._close(reply)
                return None
            case _:
                raise TypeError(f"unknown request {request!r}")
        return self.session.complete(request, outcome)

    async def _authenticate(self, request: Authenticate) -> Outcome:
        user = request.user
        if request.password is not None and not await _check_password(user, request.password):
            return Failed(Failure.BAD_PASSWORD)
        refusal = await self.ctx.limits.leases.login(
            self.session_id, user.key, user.maximum_connections
        )
        if refusal is Refusal.UNAVAILABLE:
            return Failed(Failure.UNAVAILABLE)
        if refusal is not None:
            return Failed(Failure.USER_LIMIT)
        self._fs = UserFileSystem(self.ctx.path_io, self.ctx.root_for(user))
        return Done()

    async def _release(self) -> None:
        if self.admitted:
            self.admitted = False
            await self.ctx.limits.leases.release(self.session_id)

    def _filesystem(self) -> UserFileSystem:
        assert self._fs is not None, "file requests come only after login"
        return self._fs

    def _open_passive(self, request: OpenPassive) -> Outcome | Reply:
        self._close_passive()
        announced = self.ctx.settings.masquerade_address or normalise_host(self._local_host)
        if not request.extended and ":" in announced:
            return Reply.of(522, "PASV is IPv4 only here, use EPSV")
        try:
            sock = self.ctx.ports.bind(self._local_host)
        except NoFreePort:
            return Failed(Failure.NO_PASSIVE_PORT)
        except OSError:
            log.exception("cannot open a passive listener")
            return Failed(Failure.NO_DATA_CONNECTION)
        self._passive = PassiveListener(sock, self._peer)
        return Done((announced, self._passive.port))

    def _close_passive(self) -> None:
        if self._passive is not None:
            self._passive.close()
            self._passive = None

    async def _run_transfer(self, request: Transfer) -> Outcome:
        assert self.session is not None and self.session.user is not None
        job = self._job(request, self.session.user)
        self._transfer = transfer = asyncio.get_running_loop().create_task(job.run())
        try:
            # Awaited directly: the 226 goes out one loop iteration sooner
            # than through asyncio.wait, which hundreds of transfers notice.
            return await transfer
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not transfer.cancelled() or (current is not None and current.cancelling()):
                raise  # this request itself is cancelled, not only its transfer
            return Failed(Failure.ABORTED)  # by ABOR, or the connection is gone
        finally:
            self._transfer = None
            self._close_passive()

    def _job(self, request: Transfer, user: User) -> TransferJob:
        ctx = self.ctx
        if self._buckets is None:
            self._buckets = ConnectionBuckets()
        throttle = throttle_for(
            ctx.limits, ctx.settings, user, self._buckets, upload=request.is_upload
        )
        return TransferJob(
            request=request,
            session=self._session(),
            fs=self._filesystem(),
            throttle=throttle,
            counters=ctx.counters,
            send_reply=self._write,
            passive=self._passive,
            local_host=self._local_host,
            wait_timeout=ctx.settings.wait_future_timeout,
            socket_timeout=ctx.settings.socket_timeout,
            pipe=ctx.pipe,
        )

    def _session(self) -> Session:
        assert self.session is not None
        return self.session


async def _check_password(user: User, password: str) -> bool:
    if user.password_hash is None:
        return user.check_password(password)
    # A password hash costs tens of milliseconds by design: off the loop.
    return await asyncio.to_thread(user.check_password, password)
