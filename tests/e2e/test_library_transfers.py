"""Transfers through the library server: REST, ABOR, passive ports, throttles, safety."""

from __future__ import annotations

import ftplib
import io
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ftp_cluster import MemoryPathIO, PathIO, Server, User
from tests.e2e.conftest import RunningServer, ServerFactory

MiB = 1024 * 1024


def memory_server(**options: Any) -> Server:
    return Server(path_io_factory=MemoryPathIO, **options)


def control(ftp: ftplib.FTP) -> socket.socket:
    assert ftp.sock is not None
    return ftp.sock


def download(ftp: ftplib.FTP, name: str, rest: int | None = None) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write, rest=rest)
    return out.getvalue()


def test_rest_then_retr_resumes_and_past_end_sends_nothing(run_server: ServerFactory) -> None:
    ftp = run_server(memory_server).client()
    ftp.storbinary("STOR f", io.BytesIO(b"0123456789"))
    assert download(ftp, "f", rest=4) == b"456789"
    assert download(ftp, "f", rest=100) == b""


def test_rest_then_stor_overwrites_in_place_without_truncating(
    run_server: ServerFactory,
) -> None:
    ftp = run_server(memory_server).client()
    ftp.storbinary("STOR f", io.BytesIO(b"0123456789"))
    ftp.storbinary("STOR f", io.BytesIO(b"ab"), rest=3)
    assert download(ftp, "f") == b"012ab56789"
    ftp.storbinary("APPE f", io.BytesIO(b"++"))
    assert download(ftp, "f") == b"012ab56789++"


def test_rest_is_cleared_by_another_command(run_server: ServerFactory) -> None:
    ftp = run_server(memory_server).client()
    ftp.storbinary("STOR f", io.BytesIO(b"0123456789"))
    ftp.sendcmd("REST 5")
    ftp.sendcmd("NOOP")
    assert download(ftp, "f") == b"0123456789"


def test_abor_with_nothing_running_is_226(run_server: ServerFactory) -> None:
    ftp = run_server(memory_server).client()
    assert ftp.sendcmd("ABOR").startswith("226")


def _throttled_download_session(running: RunningServer) -> tuple[ftplib.FTP, socket.socket]:
    ftp = running.client()
    ftp.storbinary("STOR big", io.BytesIO(os.urandom(4 * MiB)))
    ftp.voidcmd("TYPE I")
    data = ftp.transfercmd("RETR big")
    return ftp, data


def test_abor_during_a_transfer_replies_426_then_226(run_server: ServerFactory) -> None:
    running = run_server(lambda: memory_server(write_speed_limit_per_connection=256 * 1024))
    ftp, data = _throttled_download_session(running)
    assert data.recv(1024)
    control(ftp).sendall(b"ABOR\r\n")
    first = ftp.getline()
    second = ftp.getline()
    data.close()
    assert first.startswith("426"), first
    assert second.startswith("226"), second
    assert ftp.voidcmd("NOOP").startswith("200")


def test_idle_timeout_does_not_kill_a_running_transfer(run_server: ServerFactory) -> None:
    running = run_server(
        lambda: memory_server(idle_timeout=0.5, write_speed_limit_per_connection=1 * MiB)
    )
    ftp = running.client()
    payload = os.urandom(2 * MiB)  # about 2 s at 1 MiB/s: four idle timeouts long
    ftp.storbinary("STOR f", io.BytesIO(payload))
    assert download(ftp, "f") == payload


def test_new_pasv_closes_the_unused_listener(run_server: ServerFactory) -> None:
    running = run_server(memory_server)
    ftp = running.client()
    first = ftp.sendcmd("EPSV")
    old_port = int(first.split("|||")[1].rstrip("|)"))
    ftp.sendcmd("EPSV")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((running.host, old_port), timeout=5).close()


def test_no_free_passive_port_is_425_and_the_session_goes_on(run_server: ServerFactory) -> None:
    # 425 as pyftpdlib and vsftpd reply; 421 would mean the server closes the session.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        ftp = run_server(lambda: memory_server(data_ports=range(port, port + 1))).client()
        with pytest.raises(ftplib.error_temp, match="425"):
            ftp.sendcmd("PASV")
        assert ftp.voidcmd("NOOP").startswith("200")  # the session goes on


def test_foreign_data_connection_is_refused(run_server: ServerFactory) -> None:
    running = run_server(memory_server)
    ftp = running.client()
    ftp.storbinary("STOR f", io.BytesIO(b"secret data"))
    reply = ftp.sendcmd("EPSV")
    port = int(reply.split("|||")[1].rstrip("|)"))
    thief = socket.socket()
    thief.bind(("127.0.0.2", 0))
    thief.settimeout(5)
    thief.connect((running.host, port))
    control(ftp).sendall(b"RETR f\r\n")
    time.sleep(0.2)
    # The thief got nothing: its connection was closed without data.
    assert thief.recv(100) == b""
    thief.close()
    with socket.create_connection((running.host, port), timeout=5) as data:
        assert ftp.getline().startswith("150")
        received = b"".join(iter(lambda: data.recv(65536), b""))
    assert received == b"secret data"
    assert ftp.getline().startswith("226")


def test_port_to_a_third_party_is_refused(run_server: ServerFactory) -> None:
    ftp = run_server(memory_server).client()
    with pytest.raises(ftplib.error_perm, match="504"):
        ftp.sendcmd("PORT 127,0,0,2,200,10")
    with pytest.raises(ftplib.error_perm, match="504"):
        ftp.sendcmd("EPRT |1|127.0.0.2|51234|")


def test_active_mode_transfer(run_server: ServerFactory) -> None:
    ftp = run_server(memory_server).client()
    ftp.set_pasv(False)
    ftp.storbinary("STOR f", io.BytesIO(b"active" * 1000))
    assert download(ftp, "f") == b"active" * 1000


def test_failed_upload_keeps_the_old_file(run_server: ServerFactory, tmp_path: Path) -> None:
    running = run_server(lambda: Server((User(base_path=tmp_path),), path_io_factory=PathIO))
    (tmp_path / "f").write_bytes(b"old content")
    ftp = running.client()
    ftp.voidcmd("TYPE I")
    data = ftp.transfercmd("STOR f")
    data.sendall(b"half of the new")
    # The client dies mid-upload: the control connection goes first.
    control(ftp).close()
    time.sleep(0.3)
    data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    data.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(list(tmp_path.iterdir())) > 1:
        time.sleep(0.05)
    assert (tmp_path / "f").read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no temporary left


def test_concurrent_reads_of_one_memory_file_do_not_mix(run_server: ServerFactory) -> None:
    running = run_server(memory_server)
    payload = os.urandom(3 * MiB)
    running.client().storbinary("STOR f", io.BytesIO(payload))
    results: list[bytes] = []

    def fetch() -> None:
        ftp = running.client()
        results.append(download(ftp, "f"))
        ftp.quit()

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 6 and all(result == payload for result in results)


def test_stalled_data_connection_hits_socket_timeout(run_server: ServerFactory) -> None:
    running = run_server(lambda: memory_server(socket_timeout=0.5))
    ftp = running.client()
    ftp.voidcmd("TYPE I")
    data = ftp.transfercmd("STOR f")
    data.sendall(b"some")  # then nothing: the server gives up on us
    control(ftp).settimeout(10)
    assert ftp.getline().startswith("451")
    data.close()


def _timed_download(ftp: ftplib.FTP, name: str) -> tuple[int, float]:
    started = time.monotonic()
    size = len(download(ftp, name))
    return size, time.monotonic() - started


@pytest.mark.parametrize(
    "option",
    ["write_speed_limit", "write_speed_limit_per_connection"],
)
def test_download_throttles_hold(run_server: ServerFactory, option: str) -> None:
    rate = 2 * MiB
    running = run_server(lambda: memory_server(**{option: rate}))
    ftp = running.client()
    ftp.storbinary("STOR f", io.BytesIO(os.urandom(4 * MiB)))
    size, elapsed = _timed_download(ftp, "f")
    # 4 MiB at 2 MiB/s: 2 s; the burst after idle is at most a fraction of a second.
    assert size == 4 * MiB
    assert 1.5 < elapsed < 4.0, elapsed
    time.sleep(1.5)  # idle: the bucket must not bank unbounded credit
    size, elapsed = _timed_download(ftp, "f")
    assert 1.5 < elapsed < 4.0, elapsed


def test_user_upload_throttle_is_shared_by_its_sessions(run_server: ServerFactory) -> None:
    rate = 2 * MiB
    running = run_server(
        lambda: Server(
            (User("u", "pw-throttle-3141", read_speed_limit=rate),), path_io_factory=MemoryPathIO
        )
    )
    payload = os.urandom(2 * MiB)
    durations: list[float] = []

    def upload(index: int) -> None:
        ftp = running.client("u", "pw-throttle-3141")
        started = time.monotonic()
        ftp.storbinary(f"STOR f{index}", io.BytesIO(payload))
        durations.append(time.monotonic() - started)
        ftp.quit()

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # 4 MiB in all at 2 MiB/s: the slower of the two takes about 2 s.
    assert len(durations) == 2
    assert 1.5 < max(durations) < 4.0, durations


def test_client_that_never_connects_gets_425_after_wait_future_timeout(
    run_server: ServerFactory,
) -> None:
    ftp = run_server(lambda: memory_server(wait_future_timeout=0.3)).client()
    ftp.storbinary("STOR f", io.BytesIO(b"x"))
    ftp.sendcmd("PASV")
    started = time.monotonic()
    assert ftp.sendcmd("RETR f").startswith("150")
    assert ftp.getline().startswith("425")
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("option", ["write_speed_limit", "write_speed_limit_per_connection"])
def test_user_download_throttles_hold(run_server: ServerFactory, option: str) -> None:
    limits: dict[str, Any] = {option: 2 * MiB}
    running = run_server(
        lambda: Server((User("u", "pw-throttle-3141", **limits),), path_io_factory=MemoryPathIO)
    )
    ftp = running.client("u", "pw-throttle-3141")
    ftp.storbinary("STOR f", io.BytesIO(os.urandom(4 * MiB)))
    size, elapsed = _timed_download(ftp, "f")
    assert size == 4 * MiB
    assert 1.5 < elapsed < 4.0, elapsed
