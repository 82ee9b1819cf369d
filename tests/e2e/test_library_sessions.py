"""The library server with stdlib ftplib: logins, navigation, listings, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import gc
import io
import os
import socket
import time
from pathlib import Path

import pytest

from ftp_cluster import MemoryPathIO, PathIO, Permission, Server, User
from ftp_cluster.shared.limits.local import LocalLeases, LocalLimits
from ftp_cluster.shared.settings import DefenderSettings
from ftp_cluster.worker.connection import ControlConnection
from ftp_cluster.worker.endpoints import PassiveListener
from ftp_cluster.worker.transfer import TransferJob
from tests.e2e.conftest import ServerFactory

GUIDO = User(
    "Guido",
    "secret_password",
    home_path="/Guido",
    permissions=(
        Permission("/", readable=False, writable=False),
        Permission("/Guido", readable=True, writable=True),
    ),
)
ANON = User(
    home_path="/anon",
    permissions=(
        Permission("/", readable=False, writable=False),
        Permission("/anon", readable=True),
    ),
)


def tutorial_server() -> Server:
    return Server((GUIDO, ANON), path_io_factory=MemoryPathIO)


def test_default_server_is_anonymous_read_write_on_the_current_directory(
    run_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hello.txt").write_bytes(b"hi")
    running = run_server(Server)
    ftp = running.client("anonymous", "anon@")
    assert ftp.pwd() == "/"
    assert ftp.nlst() == ["hello.txt"]
    ftp.storbinary("STOR up.bin", io.BytesIO(b"data"))
    assert (tmp_path / "up.bin").read_bytes() == b"data"
    ftp.quit()


def test_greeting_and_syst_are_verbatim(run_server: ServerFactory) -> None:
    running = run_server(
        lambda: Server(path_io_factory=MemoryPathIO, welcome_message="hi!", system_type="XYZ")
    )
    ftp = running.client(user="")
    assert ftp.getwelcome() == "220 hi!"
    assert ftp.sendcmd("SYST") == "215 XYZ"
    ftp.close()
    assert (
        run_server(lambda: Server(path_io_factory=MemoryPathIO)).client().sendcmd("SYST")
        == "215 UNIX Type: L8"
    )


def test_tutorial_users_and_permissions(run_server: ServerFactory) -> None:
    running = run_server(tutorial_server)
    guido = running.client("Guido", "secret_password")
    assert guido.pwd() == "/Guido"  # home does not exist yet, login still works
    with pytest.raises(ftplib.error_perm, match="550"):
        guido.cwd("/")
    with pytest.raises(ftplib.error_perm, match="550"):
        guido.mkd("/other")
    guido.mkd("/Guido")  # the target path itself is writable
    guido.storbinary("STOR file.txt", io.BytesIO(b"x" * 10))
    assert guido.size("file.txt") == 10
    with pytest.raises(ftplib.error_perm, match="530"):
        running.client("Guido", "wrong")
    anon = running.client("someone", "whatever")
    assert anon.pwd() == "/anon"
    with pytest.raises(ftplib.error_perm, match="550"):
        anon.storbinary("STOR /anon/x", io.BytesIO(b"x"))
    with pytest.raises(ftplib.error_perm, match="550"):
        anon.retrbinary("RETR /Guido/file.txt", lambda _: None)


def test_user_on_a_logged_in_session_starts_a_new_login(run_server: ServerFactory) -> None:
    ftp = run_server(tutorial_server).client("Guido", "secret_password")
    assert ftp.sendcmd("USER Guido").startswith("331")
    with pytest.raises(ftplib.error_perm, match="530"):
        ftp.pwd()
    assert ftp.sendcmd("PASS secret_password").startswith("230")
    assert ftp.pwd() == "/Guido"


def test_cwd_above_root_stays_at_root(run_server: ServerFactory) -> None:
    ftp = run_server(lambda: Server(path_io_factory=MemoryPathIO)).client()
    ftp.cwd("../../..")
    assert ftp.pwd() == "/"
    ftp.mkd("a")
    ftp.cwd("a")
    ftp.cwd("../../../a")
    assert ftp.pwd() == "/a"


def test_missing_paths_are_550(run_server: ServerFactory) -> None:
    ftp = run_server(lambda: Server(path_io_factory=MemoryPathIO)).client()
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.sendcmd("MLST /nope")
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.storbinary("STOR /missing/dir/file", io.BytesIO(b"x"))
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.cwd("/nope")
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.rmd("/nope")


def test_mlsd_and_list_formats(run_server: ServerFactory) -> None:
    ftp = run_server(lambda: Server(path_io_factory=MemoryPathIO)).client()
    ftp.mkd("dir")
    ftp.storbinary("STOR dir/a.txt", io.BytesIO(b"12345"))
    ftp.mkd("dir/sub")
    entries = dict(ftp.mlsd("dir", facts=["type", "size", "modify", "create", "perm", "unique"]))
    assert set(entries) == {".", "..", "a.txt", "sub"}
    assert entries["."]["type"] == "cdir" and entries[".."]["type"] == "pdir"
    assert entries["a.txt"]["type"] == "file" and entries["a.txt"]["size"] == "5"
    assert entries["sub"]["type"] == "dir"
    for facts in entries.values():
        assert {"modify", "create", "perm", "unique"} <= set(facts)
    lines: list[str] = []
    ftp.retrlines("LIST dir", lines.append)
    assert len(lines) == 2
    assert not any(line.startswith("total") for line in lines)
    assert lines[0].startswith("-") and lines[0].endswith(" a.txt")
    assert lines[1].startswith("d") and lines[1].endswith(" sub")
    mlst = ftp.sendcmd("MLST dir/a.txt")
    assert "type=file;size=5;" in mlst


def test_rename_delete_rmd(run_server: ServerFactory) -> None:
    ftp = run_server(lambda: Server(path_io_factory=MemoryPathIO)).client()
    ftp.mkd("d")
    ftp.storbinary("STOR d/a", io.BytesIO(b"1"))
    ftp.rename("d/a", "d/b")
    assert ftp.nlst("d") == ["b"]
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.rmd("d")  # not empty
    ftp.delete("d/b")
    ftp.rmd("d")
    assert ftp.nlst() == []


def test_memory_servers_do_not_share_a_tree(run_server: ServerFactory) -> None:
    first = run_server(lambda: Server(path_io_factory=MemoryPathIO)).client()
    first.mkd("only-here")
    second = run_server(lambda: Server(path_io_factory=MemoryPathIO)).client()
    assert second.nlst() == []


def test_malformed_and_overlong_lines_get_clear_errors(run_server: ServerFactory) -> None:
    running = run_server(lambda: Server(path_io_factory=MemoryPathIO))
    with socket.create_connection((running.host, running.port), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(b"A" * 10000 + b"\r\n")
        assert reader.readline().startswith(b"500")
        sock.sendall(b"12 3\r\n")
        assert reader.readline().startswith(b"500")
        sock.sendall(b"\xff\xfe\r\n")
        assert reader.readline().startswith(b"500")
        sock.sendall(b"NOOP\r\n")
        assert reader.readline().startswith(b"200")


def test_idle_timeout_closes_a_silent_session(run_server: ServerFactory) -> None:
    running = run_server(lambda: Server(path_io_factory=MemoryPathIO, idle_timeout=0.5))
    ftp = running.client()
    time.sleep(1.5)
    with pytest.raises((EOFError, ConnectionError, ftplib.error_temp)):
        ftp.voidcmd("NOOP")
        ftp.voidcmd("NOOP")


def test_closed_sessions_are_not_kept_until_their_idle_timeout(
    run_server: ServerFactory,
) -> None:
    """A closed session must be freed now, not when its idle timer would fire."""
    running = run_server(
        lambda: Server(
            [User(base_path=Path("/"), home_path="/")],
            path_io_factory=MemoryPathIO,
            idle_timeout=300,
        )
    )
    kinds = (ControlConnection, PassiveListener, TransferJob)

    async def live_objects() -> list[int]:
        await asyncio.sleep(0.2)  # let the last connection_lost callbacks run
        gc.collect()
        objects = gc.get_objects()
        return [sum(isinstance(o, kind) for o in objects) for kind in kinds]

    before = running.call(live_objects())  # other tests' may linger
    for n in range(10):
        ftp = running.client()
        ftp.storbinary(f"STOR f{n}", io.BytesIO(b"x" * 1000))
        ftp.retrbinary(f"RETR f{n}", lambda _: None)
        ftp.nlst()
        ftp.quit()
        running.client().close()  # and one that just goes away
    assert running.call(live_objects()) == before


class SlowReleaseLeases(LocalLeases):
    """In-process leases whose release takes as long as a slow remote store's."""

    async def release(self, session_id: str) -> None:
        await asyncio.sleep(0.3)
        await super().release(session_id)


class SlowReleaseLimits(LocalLimits):
    """In-process limits with :class:`SlowReleaseLeases`."""

    def __init__(self) -> None:
        super().__init__()
        self.leases = SlowReleaseLeases()


def test_quit_releases_the_slot_before_221_is_read(run_server: ServerFactory) -> None:
    running = run_server(
        lambda: Server(
            path_io_factory=MemoryPathIO, limits=SlowReleaseLimits(), maximum_connections=1
        )
    )
    for _ in range(3):
        with socket.create_connection((running.host, running.port), timeout=10) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"220")
            sock.sendall(b"QUIT\r\n")
            assert reader.readline().startswith(b"221")
            # Under a cap of one, the next client gets in only if the slot
            # was free when the 221 was sent, not some time after it.
            follower = running.client()
            follower.quit()


def test_server_and_ip_limits_are_421_and_user_limit_530(run_server: ServerFactory) -> None:
    running = run_server(
        lambda: Server(
            (User("u", "limits-Pw-7731", maximum_connections=1), User()),
            path_io_factory=MemoryPathIO,
            maximum_connections=3,
            maximum_connections_per_ip=2,
        )
    )
    # A distinctive password: the refused login is logged (never its password).
    first = running.client("u", "limits-Pw-7731")
    with pytest.raises(ftplib.error_perm, match="530"):
        running.client("u", "limits-Pw-7731")
    second = running.client("anonymous")
    with pytest.raises(ftplib.error_temp, match="421"):
        running.client(user="")
    # A refusal at login is an accepted connection; only the 421 was refused.
    stats = running.server.stats()
    assert (stats.accepted, stats.refused) == (4, 1)
    first.quit()
    second.quit()


def test_close_drops_sessions_and_wait_closed_is_prompt(run_server: ServerFactory) -> None:
    running = run_server(lambda: Server(path_io_factory=MemoryPathIO))
    clients = [running.client() for _ in range(5)]
    started = time.monotonic()

    async def close() -> None:
        running.server.close()
        await running.server.wait_closed()

    running.call(close())
    assert time.monotonic() - started < 2
    for ftp in clients:
        with pytest.raises((EOFError, ConnectionError, ftplib.error_temp)):
            ftp.voidcmd("NOOP")
            ftp.voidcmd("NOOP")


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_runs_on_both_loops_and_both_families(
    run_server: ServerFactory, loop: str, host: str
) -> None:
    running = run_server(lambda: Server(path_io_factory=MemoryPathIO), host=host, loop=loop)
    ftp = running.client()
    ftp.storbinary("STOR f", io.BytesIO(b"abc" * 1000))
    data = io.BytesIO()
    ftp.retrbinary("RETR f", data.write)
    assert data.getvalue() == b"abc" * 1000
    ftp.quit()


def test_path_io_runs_on_real_disk(run_server: ServerFactory, tmp_path: Path) -> None:
    running = run_server(lambda: Server((User(base_path=tmp_path),), path_io_factory=PathIO))
    ftp = running.client()
    ftp.mkd("d")
    ftp.storbinary("STOR d/f", io.BytesIO(os.urandom(100_000)))
    assert (tmp_path / "d" / "f").stat().st_size == 100_000


def test_the_login_that_gets_its_address_banned_counts_as_banned(
    run_server: ServerFactory,
) -> None:
    defender = DefenderSettings(enabled=True, threshold=2, login_delay=0)
    running = run_server(
        lambda: Server(
            (User("u", "banned-Pw-6174"),),
            path_io_factory=MemoryPathIO,
            limits=LocalLimits(defender=defender),
        )
    )
    with pytest.raises(ftplib.error_perm, match="530"):
        running.client("u", "wrong-guess-1")
    with contextlib.suppress(ftplib.Error, OSError, EOFError):
        running.client("u", "wrong-guess-2")  # reaches the threshold: 530 or the ban's 421
    stats = running.server.stats()
    assert (stats.logins_bad_password, stats.logins_banned) == (1, 1)
