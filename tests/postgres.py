"""A private PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` in a temp dir.

It listens on a free loopback port and on a unix socket in its own
directory, with trust authentication, so tests never touch the machine's own
instance (5432). PostgreSQL refuses to run as root: when the tests do, the
server runs as the ``postgres`` account (or ``nobody``), which owns the
directory. The binaries come from ``PATH`` or Debian's
``/usr/lib/postgresql/*/bin``; missing, the fixture fails saying what to install.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "find_binaries"]

_START_TIMEOUT = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def find_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; fails the test if there is none."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
        "/usr/lib/postgresql/*/bin: install them with `apt-get install postgresql`"
    )


def _run_as() -> pwd.struct_passwd | None:
    if os.getuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    pytest.fail("running as root, and neither a 'postgres' nor a 'nobody' account to run as")


class PostgresServer:
    """One cluster (``initdb`` once); :meth:`stop` and :meth:`start` keep its data and port."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        # A short path: unix socket paths are limited to ~100 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix="ftpc-pg-"))
        self.data = self.directory / "data"
        self.port = _free_port()
        self._account = _run_as()
        if self._account is not None:
            os.chown(self.directory, self._account.pw_uid, self._account.pw_gid)
        self._pg("initdb", "-D", str(self.data), "-U", "ftp", "-A", "trust", "-E", "UTF8")
        self.running = False

    def _pg(self, program: str, *args: str) -> None:
        account = self._account
        done = subprocess.run(
            [str(self.binaries / program), *args],
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT + 10,
            cwd=self.directory,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
        if done.returncode != 0:
            log = self.directory / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr}\n{tail}")

    @property
    def url(self) -> str:
        """A TCP URL of the ``ftp`` database (created by :meth:`start`)."""
        return f"postgresql://ftp@127.0.0.1:{self.port}/ftp"

    @property
    def unix_url(self) -> str:
        return f"postgresql://ftp@/ftp?host={self.directory}&port={self.port}"

    def start(self) -> None:
        if self.running:
            return
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.directory} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
            "-c shared_buffers=16MB"
        )
        log = str(self.directory / "server.log")
        self._pg("pg_ctl", "start", "-w", "-t", str(_START_TIMEOUT), "-D", str(self.data),
                 "-l", log, "-o", options)  # fmt: skip
        self.running = True
        if not (self.data / ".ftp-created").exists():
            self._pg("createdb", "-h", str(self.directory), "-p", str(self.port), "-U", "ftp",
                     "ftp")  # fmt: skip
            (self.data / ".ftp-created").touch()

    def create_database(self, name: str) -> str:
        """A new empty database on this server; its TCP URL."""
        self._pg("createdb", "-h", str(self.directory), "-p", str(self.port), "-U", "ftp", name)
        return f"postgresql://ftp@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, the data stays."""
        if not self.running:
            return
        self.running = False
        self._pg("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
