"""Protocol coverage with real clients: STOU, TYPE A, MFMT, STAT, EPSV ALL, urgent ABOR...

Each test here drives the library server with the stdlib ``ftplib`` client,
curl or lftp, the way their users do.
"""

from __future__ import annotations

import ftplib
import io
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ftp_cluster import MemoryPathIO, PathIO, Server, User
from tests.e2e.conftest import RunningServer, ServerFactory
from tests.programs import program

MiB = 1024 * 1024


def disk_server(root: Path, **options: Any) -> Server:
    return Server((User(base_path=root),), path_io_factory=PathIO, **options)


def control(ftp: ftplib.FTP) -> socket.socket:
    assert ftp.sock is not None
    return ftp.sock


def read_reply(ftp: ftplib.FTP) -> str:
    """One whole reply (multi-line ones joined by newlines)."""
    return ftp.getmultiline()


# -- STOU ------------------------------------------------------------------------------


def test_stou_creates_a_uniquely_named_file_each_time(
    run_server: ServerFactory, tmp_path: Path
) -> None:
    ftp = run_server(lambda: disk_server(tmp_path)).client()
    for content in (b"first", b"second", b"third"):
        ftp.storbinary("STOU", io.BytesIO(content))
    for content in (b"a", b"b"):
        ftp.storbinary("STOU report.txt", io.BytesIO(content))
    files = {path.read_bytes(): path.name for path in tmp_path.iterdir()}
    assert sorted(files) == [b"a", b"b", b"first", b"second", b"third"]
    # A suggested name is taken as is while it is free, then gets a unique suffix.
    assert files[b"a"] == "report.txt" and files[b"b"].startswith("report.txt.")


def test_stou_reply_names_the_file(run_server: ServerFactory) -> None:
    ftp = run_server(lambda: Server(path_io_factory=MemoryPathIO)).client()
    ftp.voidcmd("TYPE I")
    ftp.sendcmd("EPSV")  # a listener; we connect after reading the 150 ourselves
    reply = ftp.sendcmd("EPSV")
    port = int(reply.split("|||")[1].rstrip("|)"))
    with socket.create_connection((ftp.host, port), timeout=5) as data:
        control(ftp).sendall(b"STOU\r\n")
        opening = ftp.getline()
        data.sendall(b"payload")
    assert opening.startswith("150 FILE: "), opening
    name = opening.removeprefix("150 FILE: ")
    assert ftp.getline().startswith("226")
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write)
    assert out.getvalue() == b"payload"


# -- TYPE A -------------------------------------------------------------------------------


TEXT = b"".join(b"line %d with some text\n" % n for n in range(20000))  # ~500 KiB


def test_ascii_retr_sends_crlf_and_stor_stores_lf(
    run_server: ServerFactory, tmp_path: Path
) -> None:
    (tmp_path / "unix.txt").write_bytes(TEXT)
    ftp = run_server(lambda: disk_server(tmp_path)).client()
    ftp.voidcmd("TYPE A")
    with ftp.transfercmd("RETR unix.txt") as data:
        received = b"".join(iter(lambda: data.recv(65536), b""))
    ftp.voidresp()
    assert received == TEXT.replace(b"\n", b"\r\n")
    # ftplib's storlines sends every line with CR LF, in TYPE A.
    ftp.storlines("STOR dos.txt", io.BytesIO(TEXT))
    assert (tmp_path / "dos.txt").read_bytes() == TEXT
    # CR LF split across the network's chunks, and a lone CR that must stay.
    ftp.voidcmd("TYPE A")
    with ftp.transfercmd("STOR split.txt") as data:
        for piece in (b"one\r", b"\ntwo\r", b"\n\r", b"x\r\n", b"end\r"):
            data.sendall(piece)
            time.sleep(0.05)
    ftp.voidresp()
    assert (tmp_path / "split.txt").read_bytes() == b"one\ntwo\n\rx\nend\r"
    # Binary is untouched both ways.
    out = io.BytesIO()
    ftp.retrbinary("RETR unix.txt", out.write)
    assert out.getvalue() == TEXT


def test_ascii_mode_with_curl(run_server: ServerFactory, tmp_path: Path) -> None:
    curl = program("curl")
    (tmp_path / "unix.txt").write_bytes(b"a\nb\r\nc\n")
    running = run_server(lambda: disk_server(tmp_path))
    out = tmp_path / "got.txt"
    subprocess.run(
        [curl, "-sS", "--use-ascii", "-o", str(out), f"{running.url}/unix.txt"],
        check=True,
        timeout=30,
    )
    # curl turns the CR LF of an ASCII download back into the local LF (the
    # wire itself is checked with ftplib above).
    assert out.read_bytes() == b"a\nb\nc\n"
    # curl sends local (LF) text as CR LF in ASCII mode; the server stores LF.
    source = tmp_path / "unix-source"
    source.write_bytes(b"x\ny\n")
    subprocess.run(
        [curl, "-sS", "--use-ascii", "-T", str(source), f"{running.url}/up.txt"],
        check=True,
        timeout=30,
    )
    assert (tmp_path / "up.txt").read_bytes() == b"x\ny\n"


def test_size_in_ascii_mode_is_not_the_binary_size(
    run_server: ServerFactory, tmp_path: Path
) -> None:
    (tmp_path / "f").write_bytes(b"a\nb\n")
    ftp = run_server(lambda: disk_server(tmp_path)).client()
    ftp.voidcmd("TYPE A")
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.size("f")
    ftp.voidcmd("TYPE I")
    assert ftp.size("f") == 4


# -- MFMT, STAT of a path, MLST create -------------------------------------------------------


def test_mfmt_sets_the_modification_time(run_server: ServerFactory, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    ftp = run_server(lambda: disk_server(tmp_path)).client()
    assert "MFMT" in ftp.sendcmd("FEAT")
    assert ftp.sendcmd("MFMT 20200229123456 f") == "213 Modify=20200229123456; /f"
    assert (tmp_path / "f").stat().st_mtime == 1582979696
    assert ftp.sendcmd("MDTM f") == "213 20200229123456"
    with pytest.raises(ftplib.error_perm, match="501"):
        ftp.sendcmd("MFMT 20201340000000 f")
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.sendcmd("MFMT 20200101000000 missing")


def test_lftp_mirror_keeps_modification_times(run_server: ServerFactory, tmp_path: Path) -> None:
    lftp = program("lftp")
    root, local = tmp_path / "root", tmp_path / "local"
    root.mkdir()
    local.mkdir()
    (local / "old.txt").write_bytes(b"from 2001")
    os.utime(local / "old.txt", (1_000_000_000, 1_000_000_000))
    running = run_server(lambda: disk_server(root))
    script = f"set cmd:fail-exit yes; open {running.url}; user anonymous x; mirror -R {local} /up"
    subprocess.run([lftp, "-c", script], check=True, timeout=60, capture_output=True)
    assert (root / "up" / "old.txt").stat().st_mtime == 1_000_000_000


def test_stat_of_a_path_lists_it_over_the_control_connection(
    run_server: ServerFactory, tmp_path: Path
) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_bytes(b"12345")
    (tmp_path / "dir" / "sub").mkdir()
    (tmp_path / "secret").mkdir()
    user = User(
        base_path=tmp_path,
        permissions=(ftplib_permission("/", True), ftplib_permission("/secret", False)),
    )
    ftp = run_server(lambda: Server((user,), path_io_factory=PathIO)).client()
    reply = ftp.sendcmd("STAT /dir")
    lines = reply.split("\n")
    assert lines[0] == "213-status of /dir:" and lines[-1] == "213 end"
    assert any(line.endswith(" a.txt") and " 5 " in line for line in lines)
    assert any(line.lstrip().startswith("d") and line.endswith(" sub") for line in lines)
    assert [line for line in ftp.sendcmd("STAT /dir/a.txt").split("\n") if " a.txt" in line]
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.sendcmd("STAT /secret")
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.sendcmd("STAT /missing")


def ftplib_permission(path: str, readable: bool) -> Any:
    from ftp_cluster import Permission  # noqa: PLC0415

    return Permission(path, readable=readable, writable=readable)


def test_mlst_create_is_the_birth_time(run_server: ServerFactory, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    time.sleep(1.1)
    os.chmod(path, 0o600)  # moves the inode change time, not the birth time
    ftp = run_server(lambda: disk_server(tmp_path)).client()
    facts = dict(ftp.mlsd("/", ["create", "modify"]))["f"]
    from ftp_cluster.worker.pathio.statx import stat_entry  # noqa: PLC0415

    birth = stat_entry(path).birth
    if birth is None:
        assert "create" not in facts  # no birth time here: the fact is left out
        return
    assert facts["create"] == time.strftime("%Y%m%d%H%M%S", time.gmtime(birth))
    assert facts["create"] != time.strftime("%Y%m%d%H%M%S", time.gmtime(path.stat().st_ctime))


# -- EPSV ALL, PASS -----------------------------------------------------------------------------


def test_after_epsv_all_only_epsv_sets_up_data_connections(run_server: ServerFactory) -> None:
    ftp = run_server(lambda: Server(path_io_factory=MemoryPathIO)).client()
    assert ftp.sendcmd("EPSV ALL").startswith("200")
    for command in ("PASV", "PORT 127,0,0,1,200,10", "EPRT |1|127.0.0.1|51234|"):
        with pytest.raises(ftplib.error_perm, match="503"):
            ftp.sendcmd(command)
    ftp.af = socket.AF_INET6  # makes ftplib use EPSV, as a client that sent EPSV ALL would
    ftp.storbinary("STOR f", io.BytesIO(b"still works"))
    with pytest.raises(ftplib.error_perm, match="503"):
        ftp.sendcmd("PASV")


def test_pass_on_a_logged_in_session_is_503(run_server: ServerFactory) -> None:
    ftp = run_server(lambda: Server(path_io_factory=MemoryPathIO)).client()
    with pytest.raises(ftplib.error_perm, match="503"):
        ftp.sendcmd("PASS again")
    assert ftp.voidcmd("NOOP").startswith("200")


def test_an_undecodable_password_is_530_and_leaks_nowhere(
    run_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    alice = User("alice", "s3cr\u00e9t-pw")
    running = run_server(lambda: Server((alice,), path_io_factory=MemoryPathIO))
    ftp = running.client(user="")
    ftp.sendcmd("USER alice")
    control(ftp).sendall(b"PASS ab\xbbcd\r\n")
    assert ftp.getline().startswith("530")
    ftp.login("alice", "s3cr\u00e9t-pw")  # ftplib sends UTF-8
    assert ftp.voidcmd("NOOP").startswith("200")
    text = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text}" for r in caplog.records)
    assert "s3cr" not in text and "udcbb" not in text and "\udcbb" not in text


# -- while a transfer runs: urgent ABOR, STAT, QUIT ---------------------------------------------


def _slow_download(running: RunningServer) -> tuple[ftplib.FTP, socket.socket]:
    ftp = running.client()
    ftp.storbinary("STOR big", io.BytesIO(os.urandom(4 * MiB)))
    ftp.voidcmd("TYPE I")
    return ftp, ftp.transfercmd("RETR big")


def throttled(**options: Any) -> Server:
    return Server(
        path_io_factory=MemoryPathIO, write_speed_limit_per_connection=256 * 1024, **options
    )


def test_ftplib_abort_during_retr_gets_426_then_226(run_server: ServerFactory) -> None:
    ftp, data = _slow_download(run_server(throttled))
    assert data.recv(1024)
    control(ftp).settimeout(10)
    # Urgent data (MSG_OOB), as ftplib sends it: without SO_OOBINLINE the
    # server would never see the line end of this ABOR.
    assert ftp.abort().startswith("426")
    assert ftp.getline().startswith("226")
    data.close()
    assert ftp.voidcmd("NOOP").startswith("200")
    out = io.BytesIO()
    ftp.retrbinary("RETR big", out.write, rest=4 * MiB - 10)
    assert len(out.getvalue()) == 10


def test_rfc959_urgent_abor_with_telnet_ip_and_synch(run_server: ServerFactory) -> None:
    ftp, data = _slow_download(run_server(throttled))
    assert data.recv(1024)
    sock = control(ftp)
    sock.settimeout(10)
    sock.sendall(b"\xff\xf4")  # IAC IP
    sock.sendall(b"\xff", socket.MSG_OOB)  # IAC as urgent data...
    sock.sendall(b"\xf2ABOR\r\n")  # ...then DM (the Synch) and the command
    assert ftp.getline().startswith("426")
    assert ftp.getline().startswith("226")
    data.close()
    assert ftp.voidcmd("NOOP").startswith("200")


def test_stat_during_a_transfer_reports_its_progress(run_server: ServerFactory) -> None:
    ftp, data = _slow_download(run_server(throttled))
    control(ftp).settimeout(10)
    received = 0
    while received < 300 * 1024:
        received += len(data.recv(65536))
    control(ftp).sendall(b"STAT\r\n")
    status = read_reply(ftp)
    assert status.startswith("213-") and "RETR /big" in status
    moved = int(status.split("bytes so far")[0].split()[-1])
    assert moved >= received
    rest = b"".join(iter(lambda: data.recv(65536), b""))
    assert received + len(rest) == 4 * MiB
    assert ftp.voidresp().startswith("226")


def test_quit_during_a_transfer_lets_it_finish_then_says_goodbye(
    run_server: ServerFactory,
) -> None:
    ftp, data = _slow_download(run_server(throttled))
    control(ftp).settimeout(10)
    control(ftp).sendall(b"QUIT\r\n")
    got = b"".join(iter(lambda: data.recv(65536), b""))
    assert len(got) >= 4 * MiB - 1024
    assert ftp.getline().startswith("226")
    assert ftp.getline().startswith("221")


def test_commands_flooded_during_a_transfer_are_not_all_read_into_memory(
    run_server: ServerFactory,
) -> None:
    ftp, data = _slow_download(run_server(throttled))
    sock = control(ftp)
    sock.setblocking(False)
    flood = b"NOOP\r\n" * 100_000
    accepted = 0
    deadline = time.monotonic() + 10
    # The server stops reading once 64 KiB wait behind the transfer: what the
    # client can still send is only what the kernel buffers hold.
    while accepted < 48 * MiB and time.monotonic() < deadline:
        try:
            accepted += sock.send(flood)
        except BlockingIOError:
            time.sleep(0.2)
            try:
                accepted += sock.send(flood)
            except BlockingIOError:
                break
    assert accepted < 24 * MiB, accepted
    data.close()
