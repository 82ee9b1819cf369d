"""vsftpd as a peer: standalone, from a generated config, with a temporary system user.

vsftpd authenticates local users through PAM against /etc/shadow, so the
harness creates a throw-away account whose password is hashed with SHA-512
crypt (``$6$``, 5000 rounds): Debian's default yescrypt costs ~20 ms per login
and would turn every login scenario into a password-hash benchmark. The account
is removed in :meth:`VsftpdPeer.teardown`.

Settings the issue requires and why: ``lock_upload_files=NO`` (otherwise
concurrent STORs block on each other's file lock), ``seccomp_sandbox=NO`` (its
sandbox kills sessions on this kernel), ``use_sendfile=YES``. Its listen
backlog is hard-coded at 32, so a burst of hundreds of connections overflows it
and some clients wait for SYN retransmits or time out: the harness reports
those as failures rather than hiding them.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from bench.client import FtpSession
from bench.ftps import client_context
from bench.peers.base import Peer, PeerUnavailable, Running, ServeSpec, free_port

__all__ = ["VsftpdPeer"]

_READY_TIMEOUT = 15.0


class VsftpdPeer(Peer):
    name = "vsftpd"
    notes = (
        "standalone from a generated config; lock_upload_files=NO, seccomp_sandbox=NO, "
        "use_sendfile=YES; one process per session (two before login)",
        "listen backlog fixed at 32 by vsftpd: connection bursts overflow it",
        "FTPS (10-14): ssl_enable, require_ssl_reuse, TLS forced for logins and data, "
        "ssl_ciphers=HIGH:!aNULL",
    )

    def __init__(self) -> None:
        self.account: str | None = None
        self.password = ""
        self.password_hash = ""

    def unavailable(self) -> str | None:
        if shutil.which("vsftpd") is None:
            return "vsftpd is not installed (apt-get install vsftpd)"
        if os.geteuid() != 0:
            return "vsftpd must run as root to authenticate a local user"
        for tool in ("useradd", "userdel", "openssl"):
            if shutil.which(tool) is None:
                return f"{tool} is missing (needed for the temporary vsftpd user)"
        return None

    def version(self) -> str:
        # vsftpd -v prints its version to stdout only when stdin is a closed/null fd.
        result = subprocess.run(
            ["vsftpd", "-v"], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        text = (result.stdout + result.stderr).strip()
        if not text:
            result = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", "vsftpd"],
                capture_output=True,
                text=True,
                check=False,
            )
            text = result.stdout.strip() or "unknown"
        return text.replace("vsftpd: version ", "")

    def cannot_serve(self, spec: ServeSpec) -> str | None:
        if spec.write_speed_limit is not None:
            return "vsftpd throttles per session only (local_max_rate)"
        return None

    def setup(self, root: Path, user: str, password: str) -> None:
        name = user
        self.password = password
        self.password_hash = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"],
            input=self.password,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # -M: no home created (vsftpd needs it to exist: it is the data root);
        # -N: no group of its own, so there is nothing else to clean up.
        result = subprocess.run(
            [
                "useradd",
                "-M",
                "-N",
                "-d",
                str(root),
                "-s",
                "/bin/sh",
                "-p",
                self.password_hash,
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PeerUnavailable(f"useradd failed: {result.stderr.strip()}")
        self.account = name

    def teardown(self) -> None:
        if self.account is None:
            return
        # userdel refuses while a session process of the user is still exiting.
        for attempt in range(20):
            force = ["-f"] if attempt == 19 else []
            result = subprocess.run(
                ["userdel", *force, self.account], capture_output=True, text=True, check=False
            )
            if result.returncode == 0:
                break
            time.sleep(0.25)
        else:
            raise RuntimeError(f"could not remove user {self.account}: {result.stderr.strip()}")
        self.account = None

    @property
    def hash_description(self) -> str:
        return f"SHA-512 crypt ({self.password_hash[:3]}, 5000 rounds): {self.password_hash}"

    def _tls_config(self, spec: ServeSpec) -> dict[str, str]:
        if spec.tls is None:
            return {}
        return {
            "ssl_enable": "YES",
            "rsa_cert_file": str(spec.tls.certificate),
            "rsa_private_key_file": str(spec.tls.private_key),
            "require_ssl_reuse": "YES",  # as the issue asks: data connections must resume
            "allow_anon_ssl": "NO",
            "force_local_logins_ssl": "YES",
            "force_local_data_ssl": "YES",
            "ssl_request_cert": "NO",  # nobody else asks for a client certificate
            # Debian's default list (ECDHE-RSA-AES256-GCM-SHA384) has no TLS 1.2 suite
            # for an EC key; TLS 1.3 suites are not governed by this.
            "ssl_ciphers": "HIGH:!aNULL",
        }

    def _config(self, spec: ServeSpec, port: int, empty: Path) -> str:
        lines = {
            "listen": "YES",
            "listen_ipv6": "NO",
            "listen_address": "127.0.0.1",
            "listen_port": str(port),
            "background": "NO",
            "anonymous_enable": "NO",
            "local_enable": "YES",
            "write_enable": "YES",
            "local_umask": "022",
            "local_root": str(spec.root),
            "chroot_local_user": "YES",
            "dirmessage_enable": "NO",
            "xferlog_enable": "NO",
            "syslog_enable": "NO",
            "connect_from_port_20": "NO",
            "pasv_enable": "YES",
            "secure_chroot_dir": str(empty),
            "pam_service_name": "vsftpd",
            "seccomp_sandbox": "NO",
            "lock_upload_files": "NO",
            "use_sendfile": "YES",
            "max_clients": "0",
            "max_per_ip": "0",
            "idle_session_timeout": "600",
            "data_connection_timeout": "300",
            "userlist_enable": "NO",
            "tcp_wrappers": "NO",
            "ftpd_banner": "vsftpd ready",
        } | self._tls_config(spec)
        return "".join(f"{key}={value}\n" for key, value in lines.items())

    async def start(self, spec: ServeSpec, workdir: Path) -> Running:
        if self.account is None:
            raise PeerUnavailable("vsftpd user was not set up")
        # vsftpd drops to the session user, who must read the files and write uploads.
        user = pwd.getpwnam(self.account)
        os.chown(spec.root / "upload", user.pw_uid, user.pw_gid)
        empty = workdir / "vsftpd-empty"
        empty.mkdir(mode=0o755, exist_ok=True)
        port = free_port()
        config = workdir / "vsftpd.conf"
        config.write_text(self._config(spec, port, empty))
        log = workdir / "vsftpd.log"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: ASYNC220 - returns at once, output to a file
                ["vsftpd", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running = Running("127.0.0.1", port, process, log, {"password_hash": self.hash_description})
        # With FTPS it refuses plain logins (force_local_logins_ssl): check the TLS one.
        tls = None if spec.tls is None else client_context(str(spec.tls.certificate))
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                session = await FtpSession.open("127.0.0.1", port, tls)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            try:
                await session.login(self.account, self.password)
            except Exception as exc:  # e.g. PAM refuses the account: stop, and say why
                await running.stop()
                raise PeerUnavailable(f"vsftpd refused the benchmark login: {exc}") from exc
            finally:
                await session.quit()
            return running
        await running.stop()
        tail = log.read_text(errors="replace").strip()[-300:]
        raise PeerUnavailable(f"vsftpd did not start (rc={process.returncode}): {tail}")
