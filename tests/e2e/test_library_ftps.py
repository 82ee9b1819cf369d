"""FTPS with real clients against the library server: explicit and implicit TLS."""

from __future__ import annotations

import asyncio
import ftplib
import io
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import aioftp
import pytest
import trustme

from ftp_cluster import MemoryPathIO, PathIO, Server, User
from tests.e2e.conftest import RunningServer, ServerFactory
from tests.e2e.tls import Certificates, ResumingFTP_TLS
from tests.programs import program

MiB = 1024 * 1024
PASSWORD = "ftps-Secret-4096"


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    directory = tmp_path / "certs"
    directory.mkdir()
    return Certificates.make(directory)


def ftps_server(certs: Certificates, root: Path | None = None, **options: Any) -> Server:
    users = (User("alice", PASSWORD, base_path=root),)
    factory = PathIO if root is not None else MemoryPathIO
    return Server(users, path_io_factory=factory, **certs.server_options(**options))


def tls_client(
    running: RunningServer,
    certs: Certificates,
    version: ssl.TLSVersion | None = None,
    context: ssl.SSLContext | None = None,
) -> ResumingFTP_TLS:
    ftp = ResumingFTP_TLS(context=context or certs.client_context(version), timeout=10)
    ftp.connect(running.host, running.port)
    ftp.auth()
    ftp.login("alice", PASSWORD)
    ftp.prot_p()
    return ftp


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_ftplib_ftps_upload_download_list_and_abort(
    run_server: ServerFactory, certs: Certificates, version: ssl.TLSVersion
) -> None:
    running = run_server(lambda: ftps_server(certs))
    ftp = tls_client(running, certs, version)
    payload = os.urandom(3 * MiB)
    ftp.storbinary("STOR f", io.BytesIO(payload))
    out = io.BytesIO()
    ftp.retrbinary("RETR f", out.write)
    assert out.getvalue() == payload
    assert ftp.nlst() == ["f"]
    out = io.BytesIO()
    ftp.retrbinary("RETR f", out.write, rest=MiB)
    assert out.getvalue() == payload[MiB:]
    ftp.quit()


def _retr_with(ftp: ResumingFTP_TLS, session: ssl.SSLSession | None) -> bytes:
    """RETR f over a data connection that offers ``session`` (None: a fresh one)."""
    conn, _ = ftplib.FTP.ntransfercmd(ftp, "RETR f")
    try:
        with ftp.context.wrap_socket(conn, server_hostname="127.0.0.1", session=session) as tls:
            return tls.recv(100)
    except (ssl.SSLError, OSError):
        return b""


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_reuse_required_refuses_fresh_and_stolen_tls_sessions(
    run_server: ServerFactory, certs: Certificates, version: ssl.TLSVersion
) -> None:
    running = run_server(lambda: ftps_server(certs))
    context = certs.client_context(version)  # one client, several control connections
    owner = tls_client(running, certs, context=context)
    owner.storbinary("STOR f", io.BytesIO(b"data"))
    owner_session = owner.sock.session  # type: ignore[union-attr]
    sneaky = tls_client(running, certs, context=context)
    for session in (None, owner_session):
        # Stdlib ftplib's own behaviour (a fresh session), then the owner's.
        assert _retr_with(sneaky, session) == b""
        with pytest.raises(ftplib.error_perm, match="522"):
            sneaky.voidresp()
        assert sneaky.voidcmd("NOOP").startswith("200")  # the session stays usable
    out = io.BytesIO()
    sneaky.retrbinary("RETR f", out.write)  # with its own session: fine
    assert out.getvalue() == b"data"
    assert _retr_with(owner, owner_session) == b"data"
    owner.voidresp()


def test_plaintext_after_auth_in_the_same_packet_is_not_executed(
    run_server: ServerFactory, certs: Certificates
) -> None:
    running = run_server(lambda: ftps_server(certs))
    with socket.create_connection((running.host, running.port), timeout=10) as sock:
        assert sock.recv(100).startswith(b"220")
        sock.sendall(
            b"AUTH TLS\r\nUSER alice\r\nPASS " + PASSWORD.encode() + b"\r\nMKD injected\r\n"
        )
        assert sock.recv(100).startswith(b"234")
        tls = certs.client_context().wrap_socket(sock, server_hostname="127.0.0.1")
        tls.sendall(b"PWD\r\n")
        assert tls.recv(100).startswith(b"530")  # not logged in: USER/PASS were dropped
        tls.sendall(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\nMLSD\r\n")
    ftp = tls_client(running, certs)
    assert "injected" not in ftp.nlst()


def test_tls_policy_replies(run_server: ServerFactory, certs: Certificates) -> None:
    running = run_server(lambda: ftps_server(certs, tls_required="all"))
    plain = ftplib.FTP(timeout=10)
    plain.connect(running.host, running.port)
    assert "AUTH TLS" in plain.sendcmd("FEAT")
    with pytest.raises(ftplib.error_perm, match="530"):
        plain.login("alice", PASSWORD)
    assert running.server.stats().logins_tls_required == 1  # feeds logins_total
    with pytest.raises(ftplib.error_perm, match="503"):
        plain.sendcmd("PBSZ 0")
    with pytest.raises(ftplib.error_perm, match="504"):
        plain.sendcmd("AUTH GSSAPI")
    ftp = ResumingFTP_TLS(context=certs.client_context(), timeout=10)
    ftp.connect(running.host, running.port)
    ftp.auth()
    with pytest.raises(ftplib.error_perm, match="503"):
        ftp.sendcmd("AUTH TLS")
    ftp.login("alice", PASSWORD)
    with pytest.raises(ftplib.error_perm, match="522"):
        ftp.nlst()  # PROT C (the default): refused before any data connection
    ftp.prot_p()
    assert ftp.nlst() == []
    with pytest.raises(ftplib.error_perm, match="536"):
        ftp.sendcmd("PROT S")
    no_tls = run_server(lambda: Server(path_io_factory=MemoryPathIO)).client()
    with pytest.raises(ftplib.error_perm, match="502"):
        no_tls.sendcmd("AUTH TLS")


def test_curl_explicit_and_implicit_ftps(
    run_server: ServerFactory, certs: Certificates, tmp_path: Path
) -> None:
    curl = program("curl")
    root = tmp_path / "root"
    root.mkdir()
    running = run_server(lambda: ftps_server(certs, root, tls_implicit_port=0))
    implicit = running.server.sockets[1].getsockname()[1]
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(2 * MiB))
    common = [curl, "-sS", "--cacert", str(certs.ca_file), "-u", f"alice:{PASSWORD}"]
    explicit_url = f"ftp://127.0.0.1:{running.port}"
    subprocess.run(
        [*common, "--ssl-reqd", "-T", str(source), f"{explicit_url}/up.bin"], check=True, timeout=30
    )
    assert (root / "up.bin").read_bytes() == source.read_bytes()
    # Resume an upload: the first half is there, curl sends the rest.
    (root / "half.bin").write_bytes(source.read_bytes()[:MiB])
    subprocess.run(
        [*common, "--ssl-reqd", "-C", "-", "-T", str(source), f"{explicit_url}/half.bin"],
        check=True,
        timeout=30,
    )
    assert (root / "half.bin").read_bytes() == source.read_bytes()
    got = subprocess.run(
        [*common, f"ftps://127.0.0.1:{implicit}/up.bin"],
        check=True,
        timeout=30,
        capture_output=True,
    ).stdout
    assert got == source.read_bytes()
    listing = subprocess.run(
        [*common, "--ssl-reqd", "-l", f"{explicit_url}/"],
        check=True,
        timeout=30,
        capture_output=True,
    ).stdout.split()
    assert sorted(listing) == [b"half.bin", b"up.bin"]


def test_lftp_mirror_over_ftps(
    run_server: ServerFactory, certs: Certificates, tmp_path: Path
) -> None:
    lftp = program("lftp")
    root, local, back = tmp_path / "root", tmp_path / "local", tmp_path / "back"
    for directory in (root, local, back):
        directory.mkdir()
    (local / "sub").mkdir()
    (local / "a.bin").write_bytes(os.urandom(300_000))
    (local / "sub" / "b.txt").write_bytes(b"hello\n")
    running = run_server(lambda: ftps_server(certs, root))
    settings = (
        "set cmd:fail-exit yes; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
        f"set ssl:ca-file {certs.ca_file}; set ssl:verify-certificate true; "
    )
    login = f"open -u alice,{PASSWORD} ftp://127.0.0.1:{running.port}; "
    subprocess.run(
        [lftp, "-c", settings + login + f"mirror -R {local} /up; ls /up; mirror /up {back}"],
        check=True,
        timeout=60,
        capture_output=True,
    )
    assert (back / "a.bin").read_bytes() == (local / "a.bin").read_bytes()
    assert (back / "sub" / "b.txt").read_bytes() == b"hello\n"


def test_aioftp_client_on_the_implicit_port(
    run_server: ServerFactory, certs: Certificates, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.txt").write_bytes(b"over implicit TLS")
    running = run_server(lambda: ftps_server(certs, root, tls_implicit_port=0))
    port = running.server.sockets[1].getsockname()[1]

    async def session() -> bytes:
        client = aioftp.Client(ssl=certs.client_context())
        await client.connect("127.0.0.1", port)
        try:
            await client.login("alice", PASSWORD)
            await client.upload(root / "f.txt", "copy.txt", write_into=True)
            async with client.download_stream("copy.txt") as stream:
                return await stream.read()
        finally:
            await client.quit()

    assert asyncio.run(session()) == b"over implicit TLS"
    assert (root / "copy.txt").read_bytes() == b"over implicit TLS"


def test_plaintext_and_stalled_handshakes_on_the_implicit_port_harm_nobody(
    run_server: ServerFactory, certs: Certificates
) -> None:
    running = run_server(lambda: ftps_server(certs, tls_implicit_port=0, socket_timeout=1.0))
    port = running.server.sockets[1].getsockname()[1]
    stalled = [socket.create_connection((running.host, port), timeout=5) for _ in range(200)]
    try:
        with socket.create_connection((running.host, port), timeout=5) as plain:
            plain.sendall(b"USER alice\r\n")
            assert plain.recv(100) == b""  # closed, no greeting in the clear
        ftp = ResumingFTP_TLS(context=certs.client_context(), timeout=10)
        # Implicit: wrap before the greeting.
        ftp.host = running.host
        ftp.sock = ftp.context.wrap_socket(
            socket.create_connection((running.host, port), timeout=10), server_hostname="127.0.0.1"
        )
        ftp.af = ftp.sock.family
        ftp.file = ftp.sock.makefile("r", encoding=ftp.encoding)
        ftp.welcome = ftp.getresp()
        ftp.login("alice", PASSWORD)
        ftp.prot_p()
        ftp.storbinary("STOR x", io.BytesIO(b"fine"))
        time.sleep(1.5)  # the stalled handshakes time out...
        assert all(s.recv(10) == b"" for s in stalled)  # ...and are closed
    finally:
        for sock in stalled:
            sock.close()


def test_abor_during_a_protected_download_and_throttles_under_tls(
    run_server: ServerFactory, certs: Certificates
) -> None:
    running = run_server(lambda: ftps_server(certs, write_speed_limit_per_connection=512 * 1024))
    ftp = tls_client(running, certs)
    ftp.storbinary("STOR big", io.BytesIO(os.urandom(4 * MiB)))
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR big")
    start = time.monotonic()
    received = 0
    while received < 600 * 1024:
        received += len(conn.recv(65536))
    assert time.monotonic() - start > 0.5  # paced: 600 KiB at 512 KiB/s, burst aside
    assert ftp.abort().startswith("426")
    assert ftp.getline().startswith("226")
    conn.close()
    assert ftp.voidcmd("NOOP").startswith("200")


def test_client_certificates_are_required_and_bound_to_the_session(
    run_server: ServerFactory, certs: Certificates, tmp_path: Path
) -> None:
    clients = trustme.CA()
    clients.cert_pem.write_to_path(tmp_path / "clients-ca.pem")
    running = run_server(lambda: ftps_server(certs, tls_client_ca=tmp_path / "clients-ca.pem"))

    def context(person: str | None) -> ssl.SSLContext:
        made = certs.client_context()
        if person is not None:
            clients.issue_cert(person).configure_cert(made)
        return made

    # Without a certificate the handshake itself is refused.
    plain = ResumingFTP_TLS(context=context(None), timeout=10)
    plain.connect(running.host, running.port)
    with pytest.raises((ssl.SSLError, OSError, EOFError)):
        plain.auth()
        plain.login("alice", PASSWORD)
    alice = context("alice@example.org")
    ftp = tls_client(running, certs, context=alice)
    ftp.storbinary("STOR f", io.BytesIO(b"mine"))
    # A data connection with someone else's certificate (and a fresh session).
    mallory = context("mallory@example.org")
    conn, _ = ftplib.FTP.ntransfercmd(ftp, "RETR f")
    try:
        with mallory.wrap_socket(conn, server_hostname="127.0.0.1") as tls:
            assert tls.recv(10) == b""
    except (ssl.SSLError, OSError):
        pass
    with pytest.raises(ftplib.error_perm, match="522"):
        ftp.voidresp()
    out = io.BytesIO()
    ftp.retrbinary("RETR f", out.write)
    assert out.getvalue() == b"mine"


def test_active_mode_appe_and_a_failed_upload_under_tls(
    run_server: ServerFactory, certs: Certificates, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_bytes(b"old content")
    running = run_server(lambda: ftps_server(certs, root))
    ftp = tls_client(running, certs)
    ftp.set_pasv(False)  # PORT: the server connects, and is still the TLS server
    ftp.storbinary("APPE f", io.BytesIO(b" + more"))
    assert (root / "f").read_bytes() == b"old content + more"
    with pytest.raises(ftplib.error_perm, match="502"):
        ftp.sendcmd("CCC")
    ftp.set_pasv(True)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR f")
    conn.sendall(b"half of a new")
    # The client dies mid-upload: the old file must stay whole.
    assert ftp.sock is not None
    ftp.sock.close()
    conn.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(list(root.iterdir())) > 1:
        time.sleep(0.05)
    assert (root / "f").read_bytes() == b"old content + more"
    assert [p.name for p in root.iterdir()] == ["f"]


def test_failed_handshakes_are_counted(run_server: ServerFactory, certs: Certificates) -> None:
    running = run_server(lambda: ftps_server(certs, tls_implicit_port=0))
    port = running.server.sockets[1].getsockname()[1]
    with socket.create_connection((running.host, port), timeout=5) as plain:
        plain.sendall(b"USER alice\r\n" * 100)  # not TLS
        assert plain.recv(100) == b""
    tls_client(running, certs).quit()
    stats = running.server.stats()
    assert stats.tls_failures == 1 and stats.tls_sessions == 1
