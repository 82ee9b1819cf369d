"""PASS over the wire: bytes that are not UTF-8 get a 530, and no password reaches the log."""

from __future__ import annotations

import logging
import socket

import pytest

from ftp_cluster import MemoryPathIO, Server, User
from ftp_cluster.shared.passwords import hash_password
from tests.e2e.conftest import ServerFactory

PASSWORD = "pässwörd"


class Control:
    """A raw control connection: send bytes, read one reply."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")
        assert self.reply().startswith(b"220")

    def reply(self) -> bytes:
        line = self.file.readline()
        while line[3:4] == b"-":  # a multi-line reply ends with "NNN "
            line = self.file.readline()
        return line

    def send(self, command: bytes) -> bytes:
        self.sock.sendall(command + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.mark.parametrize("hashed", [False, True], ids=["password", "password_hash"])
def test_undecodable_password_is_refused_and_the_log_stays_clean(
    run_server: ServerFactory, caplog: pytest.LogCaptureFixture, *, hashed: bool
) -> None:
    user = (
        User("alice", password_hash=hash_password(PASSWORD, log2_n=4))
        if hashed
        else User("alice", PASSWORD)
    )
    running = run_server(lambda: Server([user], path_io_factory=MemoryPathIO))
    caplog.set_level(logging.DEBUG)
    control = Control(running.host, running.port)
    try:
        assert control.send(b"USER alice").startswith(b"331")
        assert control.send(b"PASS ab\xbbcd").startswith(b"530")
        # The session goes on, and the right password, sent as UTF-8, logs in.
        assert control.send(b"USER alice").startswith(b"331")
        assert control.send(b"PASS " + PASSWORD.encode()).startswith(b"230")
        assert control.send(b"QUIT").startswith(b"221")
    finally:
        control.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert PASSWORD not in caplog.text and "ab\udcbbcd" not in caplog.text
