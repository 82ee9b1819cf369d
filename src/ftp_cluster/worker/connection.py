"""One control connection: the asyncio adapter around the protocol core.

The :class:`~.protocol.session.Session` owns the bytes and every decision;
this class moves bytes in and out, runs the requests the session hands out
and feeds their outcomes back, and keeps the timers and limits slots. It
writes nothing the session did not give it.

A plain :class:`asyncio.Protocol` rather than streams: an idle session costs
one small object, no task and no stream buffers. A request starts inline and
becomes a task only if it has to wait (:mod:`.eager`): with in-process
limits a whole session, admission to QUIT, runs without a single task.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from typing import cast

from ftp_cluster.shared.limits.base import Refusal
from ftp_cluster.worker import defence
from ftp_cluster.worker.context import WorkerContext
from ftp_cluster.worker.datachannel import DataChannel, Moved, NotProtected, SocketChannel
from ftp_cluster.worker.endpoints import NoFreePort, PassiveListener, connect_active
from ftp_cluster.worker.filesystem import UserFileSystem
from ftp_cluster.worker.login import log_in
from ftp_cluster.worker.protocol.addresses import normalise_host
from ftp_cluster.worker.protocol.proxy_header import ProxyHeaderError
from ftp_cluster.worker.protocol.requests import (
    Abort,
    Authenticate,
    Close,
    Done,
    Failed,
    Failure,
    FileChange,
    FileQuery,
    ListPath,
    Logout,
    OpenPassive,
    Outcome,
    QuotaQuery,
    Request,
    Signal,
    StartTLS,
    Transfer,
)
from ftp_cluster.worker.protocol.session import Session
from ftp_cluster.worker.proxied import HeaderWait, client_host, header_timeout
from ftp_cluster.worker.quota import quota_status
from ftp_cluster.worker.throttle import ConnectionBuckets, Throttle, throttle_for
from ftp_cluster.worker.tls import CertificateError, after_control_handshake
from ftp_cluster.worker.tls_channel import TLSChannel, TLSWire
from ftp_cluster.worker.tls_channel import handshake as tls_handshake
from ftp_cluster.worker.transfer import TransferJob

__all__ = ["ControlConnection"]

log = logging.getLogger("ftp_cluster.worker")

#: Received bytes not yet acted on (commands queued behind a request) before
#: reading pauses.
_MAX_BACKLOG = 64 * 1024


class ControlConnection(asyncio.Protocol):
    """The asyncio side of one FTP session."""

    __slots__ = (
        "_buckets",
        "_client",
        "_fs",
        "_header",
        "_implicit_tls",
        "_last_activity",
        "_local_host",
        "_passive",
        "_passive_tls",
        "_peer_certificate",
        "_pumping",
        "_quit",
        "_reading_paused",
        "_runner",
        "_tls",
        "_transfer",
        "_transport",
        "_writes_paused",
        "admitted",
        "closing",
        "ctx",
        "session",
        "session_id",
    )

    def __init__(
        self, ctx: WorkerContext, *, implicit_tls: bool = False, client: str | None = None
    ) -> None:
        self.ctx = ctx
        self._client = client  # a PROXY header read before the connection (proxied_tls.py)
        self._implicit_tls = implicit_tls
        self._tls: ssl.SSLContext | None = None  # this session's own (see .tls)
        self._peer_certificate: bytes | None = None
        self._passive_tls: asyncio.Task[TLSWire] | None = None
        self.session_id = ctx.next_session_id()
        self.session: Session | None = None
        self.admitted = False
        self.closing = False
        self._transport: asyncio.Transport | None = None
        self._pumping = False
        self._quit = False  # logged its QUIT: no "disconnect" event after it
        self._reading_paused = False
        self._writes_paused = False
        self._runner: asyncio.Task[None] | None = None
        self._transfer: asyncio.Task[Outcome] | None = None
        self._passive: PassiveListener | None = None
        self._buckets: ConnectionBuckets | None = None
        self._fs: UserFileSystem | None = None
        self._last_activity = time.monotonic()
        self._local_host = ""
        self._header: HeaderWait | None = None  # a trusted proxy's, still to come

    # -- asyncio callbacks --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        peer = normalise_host(transport.get_extra_info("peername")[0])
        self._local_host = transport.get_extra_info("sockname")[0]
        if self._client is not None:
            self._begin(self._client)
            return
        proxies = self.ctx.proxies
        if proxies is not None and not self.ctx.draining and proxies.trusts(peer):
            # No session, no greeting, no limits slot until the header says who this is.
            self._header = HeaderWait(header_timeout(self.ctx.settings), self._header_timed_out)
            self.ctx.connections.add(self)
            return
        self._begin(peer)

    def _begin(self, peer: str) -> None:
        self.session = Session(
            self.ctx.options, peer, self._local_host, implicit_tls=self._implicit_tls
        )
        if self.ctx.draining:
            self.session.shutdown()
            self._pump()
            return
        self.ctx.connections.add(self)
        self.ctx.events.connected(self.session_id, peer)
        self._runner = self.ctx.start(self._admit(peer))

    def data_received(self, data: bytes) -> None:
        if self._header is not None and not self.closing:
            self._header_received(data)
            return
        session = self.session
        if session is None or self.closing:
            return
        session.receive_data(data)
        self._last_activity = time.monotonic()
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self in self.ctx.connections and self.session is not None and not self._quit:
            self.ctx.events.disconnected(self.session_id, self.session.peer, self._login())
        if self._header is not None:
            self._header.cancel()
        self.ctx.connections.discard(self)
        self._close_passive()
        if self._transfer is not None:
            self._transfer.cancel()
        # A running request (admission, login) finishes first and releases
        # afterwards, so a slot taken late is never left behind.
        if self._runner is None or self._runner.done():
            self._spawn_release()

    def pause_writing(self) -> None:
        # A client that does not read its replies gets no more of them.
        self._writes_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writes_paused = False
        self._update_reading()

    def _header_received(self, data: bytes) -> None:
        assert self._header is not None and self._transport is not None
        proxy = normalise_host(self._transport.get_extra_info("peername")[0])
        try:
            done = self._header.feed(data)
        except ProxyHeaderError as error:
            log.info("session %s: bad PROXY header from %s: %s", self.session_id, proxy, error)
            self._drop()
            return
        if done is None:
            return
        header, rest = done
        self._header = None
        self.ctx.connections.discard(self)  # _begin adds it back, as a session
        self._begin(client_host(header, proxy))
        if rest:
            self.data_received(rest)

    def _header_timed_out(self) -> None:
        log.info("session %s: no PROXY header in time", self.session_id)
        self._drop()

    def _drop(self) -> None:
        """Close a connection that never became a session: no reply, nothing to release."""
        if self._header is not None:
            self._header.cancel()  # its timer would log a timeout that never happened
        self._header = None
        if not self.closing and self._transport is not None:
            self.closing = True
            self._transport.abort()

    # -- the session's events -------------------------------------------------

    def _pump(self) -> None:
        """Carry out what the session asks for, until it needs bytes or an outcome."""
        session = self.session
        transport = self._transport
        if self._pumping or session is None or transport is None:
            return  # an outer _pump on the stack picks up what is new
        self._pumping = True
        try:
            while not self.closing:
                event = session.next_event()
                if event is None:
                    break
                if type(event) is bytes:
                    transport.write(event)
                elif event is Signal.CANCEL:
                    if self._transfer is not None:
                        self._transfer.cancel()
                elif event is Signal.HANGUP:
                    self._hang_up()
                else:
                    assert isinstance(event, Request)
                    runner = self.ctx.start(self._run(event))
                    if runner is not None:
                        self._runner = runner
        finally:
            self._pumping = False
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self.closing or self.session is None:
            return
        pause = self._writes_paused or self.session.backlog > _MAX_BACKLOG
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    async def _run(self, request: Request) -> None:
        session = self.session
        assert session is not None
        try:
            outcome = await self._execute(request)
        except Exception:
            log.exception("session %s: %r failed", self.session_id, request)
            outcome = Failed(Failure.IO_ERROR)
        session.complete(request, outcome)
        self._last_activity = time.monotonic()
        if self.closing:
            self._spawn_release()
            return
        # Inline, the _pump that started this request goes on; as a task,
        # this sends the reply now rather than one loop turn later.
        self._pump()

    # -- lifecycle ----------------------------------------------------------

    async def _admit(self, peer: str) -> None:
        ctx = self.ctx
        if ctx.limits.bans.banned(peer):
            # Before any other work; a refusal for a ban scores nothing.
            ctx.stats.refused += 1
            ctx.events.refused(self.session_id, peer, "banned")
            self._refuse_banned()
            return
        if self._implicit_tls and not await self._start_tls():
            # Plaintext on the implicit port, a stall or a reset: nothing to say.
            self._hang_up()
            return
        refusal = await ctx.limits.leases.admit(self.session_id, peer, ctx.caps)
        self.admitted = refusal is None
        if self.closing:
            self._spawn_release()
            return
        assert self.session is not None
        if refusal is not None:
            ctx.stats.refused += 1
            ctx.events.refused(self.session_id, self.session.peer, refusal.name.lower())
            self.session.refused(refusal)
            if refusal is Refusal.IP_FULL or refusal is Refusal.SERVER_FULL:
                ctx.start(defence.refused_for_limit(ctx.limits.bans, peer))
        else:
            self.session.admitted()
        self._pump()

    def _refuse_banned(self) -> None:
        if self.session is None or self._transport is None:
            return
        if self._implicit_tls and self._tls is None:
            self._hang_up()  # no TLS yet: a plaintext 421 would be noise to the client
            return
        self.session.refused(Refusal.BANNED)
        self._pump()
        if self._tls is not None and self._transport is not None:
            self._transport.abort()  # a TLS close would wait for the peer's close_notify

    def close_if_banned(self) -> None:
        """421 and close now if this session's address was just banned."""
        session = self.session
        if session is not None and not self.closing and self.ctx.limits.bans.banned(session.peer):
            self._refuse_banned()

    def _hang_up(self) -> None:
        if not self.closing and self._transport is not None:
            self.closing = True
            self._transport.close()

    async def _start_tls(self) -> bool:
        """The TLS handshake of the control connection, on a context of its own."""
        tls = self.ctx.tls
        transport = self._transport
        if tls is None or transport is None or self.closing:
            return False
        try:
            context = tls.for_session()
        except CertificateError as error:
            log.error("session %s: no TLS context: %s", self.session_id, error)
            return False
        loop = asyncio.get_running_loop()
        try:
            upgraded = await loop.start_tls(
                transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self.ctx.settings.socket_timeout,
            )
        except (OSError, TimeoutError, ConnectionError) as error:
            self.ctx.stats.tls_failures += 1
            log.info("session %s: TLS handshake failed: %s", self.session_id, error)
            return False
        if upgraded is None:
            return False
        self._transport = upgraded
        self._tls = context
        after_control_handshake(context)
        tls_object = upgraded.get_extra_info("ssl_object")
        if tls_object is not None and tls.options.client_ca is not None:
            self._peer_certificate = tls_object.getpeercert(binary_form=True)
        self.ctx.stats.tls_sessions += 1
        return True

    def shutdown(self) -> None:
        """Graceful stop: an idle session gets 421 now, a busy one when its request ends."""
        if self.session is not None:
            self.session.shutdown()
            self._pump()
        elif self._header is not None:
            self._drop()

    def abort(self) -> None:
        """Fast stop: 421 and drop the connection, whatever runs."""
        if self.session is not None:
            self.session.shutdown(now=True)
            self._pump()
        elif self._header is not None:
            self._drop()
        if self._tls is not None and self._transport is not None:
            # A TLS close waits up to 30 s for the peer's close_notify.
            self._transport.abort()

    def expire_if_idle(self, now: float, timeout: float) -> None:
        """Close with 421 if idle for ``timeout`` seconds (see :mod:`.idle`).

        A running request (a long transfer) is not idleness; a session still
        waiting for admission has nothing to time out yet.
        """
        session = self.session
        if session is None or not self.admitted or session.busy or self.closing:
            return
        if now - self._last_activity >= timeout:
            session.timed_out()
            self._pump()

    def _spawn_release(self) -> None:
        if self.admitted:
            self.admitted = False
            self.ctx.start(self.ctx.limits.leases.release(self.session_id))

    async def _release(self) -> None:
        if self.admitted:
            self.admitted = False
            await self.ctx.limits.leases.release(self.session_id)

    # -- requests -----------------------------------------------------------

    async def _execute(self, request: Request) -> Outcome:
        match request:
            case Authenticate():
                outcome = await self._authenticate(request)
                peer = self._peer()
                # A failure that left its address banned (it reached the threshold) is "banned".
                banned = type(outcome) is Failed and self.ctx.limits.bans.banned(peer)
                self.ctx.events.login(self.session_id, peer, request.login, outcome, banned=banned)
                return outcome
            case Logout():
                await self.ctx.limits.leases.logout(self.session_id)
                self._fs = None
                return Done()
            case FileQuery():
                return await self._filesystem().query(request)
            case FileChange():
                return await self._filesystem().change(request)
            case ListPath():
                return await self._filesystem().listing(request.path)
            case OpenPassive():
                return self._open_passive(request)
            case StartTLS():
                if await self._start_tls():
                    return Done()
                return Failed(Failure.IO_ERROR)
            case Transfer():
                return await self._run_transfer(request)
            case QuotaQuery():
                return Done(await quota_status(self._filesystem().quota))
            case Abort():
                self._close_passive()
                return Done()
            case Close():
                assert self.session is not None
                self.ctx.events.quit(self.session_id, self.session.peer, self._login())
                self._quit = True
                await self._release()
                return Done()
        raise TypeError(f"unknown request {request!r}")

    async def _authenticate(self, request: Authenticate) -> Outcome:
        done = await log_in(self.ctx, self.session_id, self._peer(), request)
        if done.files is not None:
            self._fs = done.files
        return done.outcome

    def _peer(self) -> str:
        assert self.session is not None
        return self.session.peer

    def _login(self) -> str | None:
        """The logged-in session's login name, for its log events."""
        session = self.session
        return session.login_name if session is not None and session.user is not None else None

    def _filesystem(self) -> UserFileSystem:
        assert self._fs is not None, "file requests come only after login"
        return self._fs

    def _open_passive(self, request: OpenPassive) -> Outcome:
        self._close_passive()
        try:
            sock = self.ctx.ports.bind(self._local_host)
        except NoFreePort:
            return Failed(Failure.NO_PASSIVE_PORT)
        except OSError:
            log.exception("cannot open a passive listener")
            return Failed(Failure.NO_DATA_CONNECTION)
        assert self.session is not None
        self._passive = passive = PassiveListener(
            sock, self.session.peer, self.ctx.proxies, header_timeout(self.ctx.settings)
        )
        if request.protected and self._tls is not None:
            # The handshake starts as soon as the client connects, before it
            # sends the transfer command (aioftp's client waits for it).
            timeout = self.ctx.settings.wait_future_timeout
            self._passive_tls = asyncio.get_running_loop().create_task(
                self._handshake_when_connected(passive, timeout)
            )
        return Done(passive.port)

    async def _handshake_when_connected(
        self, passive: PassiveListener, timeout: float | None
    ) -> TLSWire:
        return await self._data_handshake(await passive.connection(None), timeout)

    async def _data_handshake(self, sock: socket.socket, timeout: float | None) -> TLSWire:
        tls = self.ctx.tls
        assert tls is not None and self._tls is not None
        try:
            return await tls_handshake(
                sock,
                self._tls,
                require_reuse=tls.session_reuse,
                peer_certificate=self._peer_certificate,
                timeout=self.ctx.settings.socket_timeout,
            )
        except BaseException:
            sock.close()
            raise

    def _close_passive(self) -> None:
        handshaking, self._passive_tls = self._passive_tls, None
        if handshaking is not None:
            if handshaking.done() and not handshaking.cancelled() and not handshaking.exception():
                handshaking.result().sock.close()  # made, never used
            handshaking.cancel()
        if self._passive is not None:
            self._passive.close()
            self._passive = None

    async def _run_transfer(self, request: Transfer) -> Outcome:
        session = self.session
        assert session is not None and session.user is not None
        ctx = self.ctx
        user = session.user
        if self._buckets is None:
            self._buckets = ConnectionBuckets()
        throttle = throttle_for(
            ctx.limits, ctx.settings, user, self._buckets, upload=request.is_upload
        )

        started: list[float] = []  # set once the 150 is out: the transfer log's start
        shown = [str(request.path)]  # the virtual path; STOU's is the name it created

        def announce(name: str | None) -> None:
            started.append(time.monotonic())
            if name is not None:
                shown[0] = str(request.path.parent / name)
            if not self.closing and self._transport is not None:
                self._transport.write(session.opening(request, name))

        async def open_channel(moved: Moved) -> DataChannel:
            return await self._open_channel(request, throttle, moved)

        job = TransferJob(
            request,
            self._filesystem(),
            announce,
            open_channel,
            ctx.stats,
            ctx.settings.socket_timeout,
        )
        self._transfer = transfer = asyncio.get_running_loop().create_task(job.run())
        outcome: Outcome = Failed(Failure.ABORTED)
        try:
            # Awaited directly: the 226 goes out one loop iteration sooner
            # than through asyncio.wait, which hundreds of transfers notice.
            outcome = await transfer
            return outcome
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not transfer.cancelled() or (current is not None and current.cancelling()):
                raise  # this request itself is cancelled, not only its transfer
            return outcome  # aborted: by ABOR, or the connection is gone
        finally:
            self._transfer = None
            self._close_passive()
            if started and not request.is_listing:
                seconds = time.monotonic() - started[0]
                ctx.events.transfer(
                    self.session_id,
                    session.peer,
                    user=user,
                    login=session.login_name,
                    request=request,
                    path=shown[0],
                    outcome=outcome,
                    seconds=seconds,
                )

    async def _open_channel(
        self, request: Transfer, throttle: Throttle, moved: Moved
    ) -> DataChannel:
        """The transfer's data connection: the client's to our listener, or ours to its port."""
        timeout = self.ctx.settings.wait_future_timeout
        endpoint = request.endpoint
        if request.protected and self._tls is None:
            raise NotProtected("PROT P without TLS on the control connection")
        if endpoint.passive and self._passive_tls is not None and request.protected:
            async with asyncio.timeout(timeout):
                wire = await asyncio.shield(self._passive_tls)
            self._passive_tls = None  # the channel owns the connection now
            return TLSChannel(wire, throttle, moved)
        if endpoint.passive:
            if self._passive is None:
                raise ConnectionError("no passive listener")
            sock = await self._passive.connection(timeout)
        else:
            sock = await connect_active(endpoint.host, endpoint.port, self._local_host, timeout)
        if request.protected:
            return TLSChannel(await self._data_handshake(sock, timeout), throttle, moved)
        if self._passive_tls is not None:
            sock.close()  # PROT C after a protected PASV: the client is in TLS already
            raise NotProtected("the data connection was made for TLS")
        return SocketChannel(sock, throttle, moved, self.ctx.pipe)
