"""Protected data connections with real TLS on loopback: reuse proves ownership.

The client is the stdlib ``ssl`` module in a thread (what ftplib.FTP_TLS
uses), the server the worker's handshake and :class:`TLSChannel`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from ftp_cluster.worker.tls import TLSContexts, TLSOptions, after_control_handshake
from ftp_cluster.worker.tls_channel import NotResumed, TLSChannel, handshake
from tests.worker.loopback import UNLIMITED, run, tcp_pair


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def contexts(ca: trustme.CA, tmp_path: Path) -> TLSContexts:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "chain.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    return TLSContexts(TLSOptions(tmp_path / "chain.pem", tmp_path / "key.pem"))


def client_context(ca: trustme.CA, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.minimum_version = context.maximum_version = version
    return context


class Client(threading.Thread):
    """A blocking TLS client on one socket: handshake, then ``work``."""

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        session: ssl.SSLSession | None,
        work: Callable[[ssl.SSLSocket], object],
    ) -> None:
        super().__init__(daemon=True)
        self.sock, self.context, self.session, self.work = sock, context, session, work
        self.result: object = None
        self.error: BaseException | None = None
        self.tls: ssl.SSLSocket | None = None

    def run(self) -> None:
        try:
            self.tls = self.context.wrap_socket(
                self.sock, server_hostname="127.0.0.1", session=self.session
            )
            self.result = self.work(self.tls)
        except BaseException as error:  # reported to the test
            self.error = error


async def control_session(
    contexts: TLSContexts, client: ssl.SSLContext
) -> tuple[ssl.SSLContext, ssl.SSLSession]:
    """A control connection's handshake; its context and the client's session."""
    context = contexts.for_session()
    server, sock = tcp_pair()

    def read_greeting(tls: ssl.SSLSocket) -> ssl.SSLSession | None:
        tls.recv(10)  # TLS 1.3 tickets come after the handshake, with the data
        return tls.session

    thread = Client(sock, client, None, read_greeting)
    thread.start()
    wire = await handshake(server, context, require_reuse=False, peer_certificate=None, timeout=5)
    channel = TLSChannel(wire, UNLIMITED, lambda _: None)
    await channel.send_bytes(b"220 hello")
    await asyncio.to_thread(thread.join, 5)
    assert thread.error is None, thread.error
    after_control_handshake(context)
    await channel.close()
    assert isinstance(thread.result, ssl.SSLSession)
    return context, thread.result


async def data_connection(
    context: ssl.SSLContext, client: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[bytes, bool]:
    """Download a payload over a data connection: what arrived; whether it resumed."""
    server, sock = tcp_pair()
    payload = bytes(range(256)) * 4096

    def receive(tls: ssl.SSLSocket) -> bytes:
        parts = []
        while chunk := tls.recv(1 << 16):
            parts.append(chunk)
        return b"".join(parts)

    thread = Client(sock, client, session, receive)
    thread.start()
    try:
        wire = await handshake(
            server, context, require_reuse=True, peer_certificate=None, timeout=5
        )
    except NotResumed:
        server.close()
        await asyncio.to_thread(thread.join, 5)
        return b"", False
    channel = TLSChannel(wire, UNLIMITED, lambda _: None)
    await channel.send_bytes(payload)
    await channel.close()
    await asyncio.to_thread(thread.join, 5)
    assert thread.error is None, thread.error
    assert thread.result == payload
    assert thread.tls is not None and thread.tls.session_reused
    return payload, True


VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


@pytest.mark.parametrize("version", VERSIONS, ids=["TLSv1.2", "TLSv1.3"])
def test_a_data_connection_must_resume_its_own_control_session(
    version: ssl.TLSVersion, ca: trustme.CA, contexts: TLSContexts
) -> None:
    client = client_context(ca, version)

    async def main() -> None:
        context, session = await control_session(contexts, client)
        other_context, other_session = await control_session(contexts, client)
        assert await data_connection(context, client, session) == (bytes(range(256)) * 4096, True)
        # Twice: a session serves every data connection of its control session.
        assert (await data_connection(context, client, session))[1]
        # A fresh TLS session, and one taken from another control connection
        # of the same worker, are both refused.
        assert not (await data_connection(context, client, None))[1]
        assert not (await data_connection(context, client, other_session))[1]
        assert (await data_connection(other_context, client, other_session))[1]

    run(main)


@pytest.mark.parametrize("ending", ["close_notify", "bare TCP close"])
def test_an_upload_ends_with_close_notify_not_with_a_bare_close(
    ca: trustme.CA, contexts: TLSContexts, ending: str
) -> None:
    client = client_context(ca, ssl.TLSVersion.TLSv1_3)
    payload = bytes(range(256)) * 8192

    async def main() -> None:
        context, session = await control_session(contexts, client)
        assert context.num_tickets == 0  # data connections get no tickets
        server, sock = tcp_pair()

        def upload(tls: ssl.SSLSocket) -> None:
            tls.sendall(payload)
            if ending == "close_notify":
                tls.unwrap()  # as ftplib, curl, lftp and aioftp end an upload
            tls.close()

        thread = Client(sock, client, session, upload)
        thread.start()
        wire = await handshake(
            server, context, require_reuse=True, peer_certificate=None, timeout=5
        )
        channel = TLSChannel(wire, UNLIMITED, lambda _: None)
        buffer = memoryview(bytearray(len(payload) + 10))
        got, eof = 0, False
        try:
            while not eof:
                filled, eof = await channel._fill(buffer[got:])
                got += filled
        except ConnectionResetError:
            # A client that died mid-upload looks just like this: never an end.
            assert ending == "bare TCP close"
        else:
            assert ending == "close_notify" and bytes(buffer[:got]) == payload
        await channel.close()
        await asyncio.to_thread(thread.join, 5)
        assert thread.error is None

    run(main)


@pytest.fixture
def stalled() -> Iterator[socket.socket]:
    server, client = tcp_pair()
    yield server
    client.close()


def test_a_stalled_handshake_times_out(contexts: TLSContexts, stalled: socket.socket) -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError):
            await handshake(
                stalled,
                contexts.for_session(),
                require_reuse=True,
                peer_certificate=None,
                timeout=0.3,
            )

    run(main)


def test_sessions_lend_the_certificate_the_worker_read_once(
    ca: trustme.CA, contexts: TLSContexts, tmp_path: Path
) -> None:
    """Sessions serve the certificate the worker read at start-up, never the disk's.

    A renewal half written on disk meanwhile (or a key removed) must reach no
    running worker: new sessions still handshake and their data connections
    still resume. (That a session's context loads no key is a cost, measured
    by bench scenario 14, not something a test here can see.)
    """
    (tmp_path / "chain.pem").write_text("a renewal, half written")
    (tmp_path / "key.pem").unlink()
    client = client_context(ca, ssl.TLSVersion.TLSv1_3)

    async def main() -> None:
        context, session = await control_session(contexts, client)
        assert (await data_connection(context, client, session))[1]
        assert not (await data_connection(context, client, None))[1]

    run(main)
