"""The transfer log: xferlog(5) lines of real ftplib and curl transfers, field by field."""

from __future__ import annotations

import ftplib
import io
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftp_cluster import PathIO, Server, User
from tests.e2e.conftest import ServerFactory

PASSWORD = "xfer-log-secret-5309"


@dataclass(frozen=True)
class Line:
    """One xferlog line, split into its 14 fields."""

    when: float
    seconds: int
    host: str
    size: int
    path: str
    kind: str
    action: str
    direction: str
    access: str
    user: str
    service: str
    method: str
    user_id: str
    status: str


def parse(text: str) -> Line:
    words = text.split(" ")
    # current-time is ctime(3): "Mon Dec  7 14:04:29 2026" (a day below 10 is space-padded)
    date = " ".join(words[:6]) if words[2] == "" else " ".join(words[:5])
    rest = words[6:] if words[2] == "" else words[5:]
    assert len(rest) == 13, text
    when = time.mktime(time.strptime(date, "%a %b %d %H:%M:%S %Y"))
    seconds, host, size, path, kind, action, direction, access, user, service, method, uid, st = (
        rest
    )
    return Line(when, int(seconds), host, int(size), path, kind, action, direction, access, user,
                service, method, uid, st)  # fmt: skip


def lines(path: Path) -> list[Line]:
    return [parse(line) for line in path.read_text().splitlines()]


def wait_lines(path: Path, count: int, timeout: float = 5.0) -> list[Line]:
    deadline = time.monotonic() + timeout
    while True:
        found = lines(path) if path.exists() else []
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def server(root: Path, log: Path, **options: Any) -> Server:
    users = (
        User("alice", PASSWORD, home_path="/", base_path=root),
        User(base_path=root),  # anonymous
    )
    return Server(users, PathIO, transfer_log=log, root=root, **options)


def test_retr_stor_stou_appe_and_a_failed_transfer_are_logged(
    run_server: ServerFactory, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "big file.bin").write_bytes(b"x" * (8 << 20))
    log = tmp_path / "xferlog"
    running = run_server(lambda: server(root, log))
    started = time.time()
    ftp = running.client("alice", PASSWORD)
    ftp.cwd("/dir")
    ftp.storbinary("STOR up.bin", io.BytesIO(b"u" * 1000))
    ftp.storbinary("APPE up.bin", io.BytesIO(b"a" * 24))
    ftp.voidcmd("TYPE I")
    unique = ftp.transfercmd("STOU up.bin")
    with unique:
        unique.sendall(b"s" * 77)
    stou_reply = ftp.voidresp()  # 226; the 150 named the file
    out = io.BytesIO()
    ftp.retrbinary("RETR up.bin", out.write)
    assert out.getvalue() == b"u" * 1000 + b"a" * 24
    ftp.retrlines("LIST")  # a listing is no file transfer: no line
    # A download that the client aborts after its first bytes: incomplete.
    ftp.voidcmd("TYPE I")  # retrlines left TYPE A
    conn = ftp.transfercmd("RETR big file.bin")
    assert conn.recv(65536)
    ftp.abort()
    conn.close()
    ftp.quit()
    anonymous = running.client("anonymous", "someone@example.org")
    anonymous.retrbinary("RETR /dir/up.bin", io.BytesIO().write)
    anonymous.quit()

    found = wait_lines(log, 6)
    assert len(found) == 6, log.read_text()
    stor, appe, stou, retr, aborted, anon = found
    stou_name = next(n for n in (root / "dir").iterdir() if n.name.startswith("up.bin."))
    assert stou_reply.startswith("226")
    expected = [
        (stor, 1000, "/dir/up.bin", "i", "c"),
        (appe, 24, "/dir/up.bin", "i", "c"),
        (stou, 77, f"/dir/{stou_name.name}", "i", "c"),
        (retr, 1024, "/dir/up.bin", "o", "c"),
        (anon, 1024, "/dir/up.bin", "o", "c"),
    ]
    for line, size, path, direction, status in expected:
        assert (line.size, line.path, line.direction, line.status) == (
            size,
            path,
            direction,
            status,
        )
    assert aborted.path == "/dir/big_file.bin"  # blanks as "_": the line keeps 14 fields
    assert (aborted.direction, aborted.status) == ("o", "i")
    assert 0 < aborted.size < 8 << 20
    for line in found:
        assert started - 2 <= line.when <= time.time() + 2
        assert line.host == "127.0.0.1"
        assert (line.kind, line.action, line.service, line.method, line.user_id) == (
            "b", "_", "ftp", "0", "*",
        )  # fmt: skip
        assert line.seconds >= 0
    assert {line.user for line in found[:5]} == {"alice"}
    assert {line.access for line in found[:5]} == {"r"}
    # The anonymous line names the login, never the "password" (an address) it gave.
    assert (anon.access, anon.user) == ("a", "anonymous")
    assert "someone@example.org" not in log.read_text()


def test_curl_ascii_upload_and_download_lines(run_server: ServerFactory, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    log = tmp_path / "xferlog"
    running = run_server(lambda: server(root, log))
    source = tmp_path / "notes.txt"
    source.write_bytes(b"one\ntwo\n")
    url = f"{running.url}/notes.txt"
    auth = f"alice:{PASSWORD}"
    subprocess.run(
        ["curl", "-sS", "--user", auth, "--use-ascii", "-T", str(source), url],
        check=True,
        timeout=20,
    )
    got = subprocess.run(
        ["curl", "-sS", "--user", auth, "--use-ascii", url],
        check=True,
        timeout=20,
        capture_output=True,
    )
    assert got.stdout == b"one\ntwo\n"
    upload, download = wait_lines(log, 2)
    assert (upload.kind, upload.direction, upload.path, upload.status) == (
        "a",
        "i",
        "/notes.txt",
        "c",
    )
    assert (download.kind, download.direction, download.status) == ("a", "o", "c")
    assert upload.size == download.size == 10  # CR LF on the wire: bytes moved


def test_a_transfer_that_never_got_its_data_connection_is_incomplete(
    run_server: ServerFactory, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_bytes(b"data")
    log = tmp_path / "xferlog"
    running = run_server(lambda: server(root, log, wait_future_timeout=1.0))
    ftp = running.client("alice", PASSWORD)
    ftp.voidcmd("TYPE I")
    ftp.sendcmd("PASV")  # the client never connects: 150, then 425 after the wait
    try:
        ftp.sendcmd("RETR f")
        ftp.voidresp()
    except ftplib.error_temp as error:
        assert str(error).startswith("425")
    ftp.close()
    (line,) = wait_lines(log, 1, timeout=15)
    assert (line.path, line.size, line.direction, line.status) == ("/f", 0, "o", "i")
