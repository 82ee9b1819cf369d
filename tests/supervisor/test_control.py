"""The pid file and the control socket, in-process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ftp_cluster.supervisor.control import (
    ControlError,
    ControlServer,
    PidFile,
    control_path,
    read_pid,
)


def _ask(server: ControlServer, raw: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(5)
        client.connect(str(server.path))
        client.sendall(raw)
        server.handle()  # accepts, reads the line, answers
        answer: dict[str, Any] = json.loads(client.makefile().readline())
        return answer


def test_commands_answer_one_json_line(tmp_path: Path) -> None:
    calls: list[str] = []

    def status() -> dict[str, Any]:
        calls.append("status")
        return {"ok": True, "workers": []}

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    server = ControlServer(tmp_path / "c.sock", {"status": status, "reload": broken})
    try:
        assert os.stat(server.path).st_mode & 0o077 == 0  # owner only
        assert _ask(server, b'{"command": "status"}\n') == {"ok": True, "workers": []}
        assert calls == ["status"]
        assert _ask(server, b'{"command": "reload"}\n') == {
            "ok": False,
            "error": "RuntimeError: boom",
        }
        assert "unknown command" in _ask(server, b'{"command": "nope"}\n')["error"]
        assert "bad request" in _ask(server, b"not json\n")["error"]
        server.handle()  # nothing waiting: returns at once
    finally:
        server.close()
    assert not server.path.exists()


def test_pid_file_is_written_and_removed(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path / "run" / "f.pid")
    pid_file.acquire()
    assert read_pid(pid_file.path) == os.getpid()
    pid_file.release()
    assert not pid_file.path.exists()
    assert control_path(pid_file.path) == tmp_path / "run" / "f.pid.sock"


def test_stale_pid_file_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    path = tmp_path / "f.pid"
    path.write_text(dead.stdout)
    PidFile(path).acquire()
    assert read_pid(path) == os.getpid()


def test_pid_file_of_someone_else_is_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "f.pid"
    path.write_text("1\n")
    PidFile(path).release()
    assert path.exists()


def test_bad_pid_files(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="is ftp-cluster running"):
        read_pid(tmp_path / "absent.pid")
    (tmp_path / "junk.pid").write_text("hello")
    with pytest.raises(ControlError, match="does not hold a pid"):
        read_pid(tmp_path / "junk.pid")
