"""pyftpdlib as a peer, run single-process.

pyftpdlib's multi-process mode (``serve_forever(worker_processes=N)``) forks
after creating its poller, so every child shares one epoll instance; under load
the children steal each other's readiness events and sessions hang. Its
single-process mode is what it is fast and reliable at, so that is what runs.

Run as a program (``python -m bench.peers.pyftpdlib_peer ...``) it is the
server; imported, it is the harness's handle on it.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import re
import sys
from importlib import metadata
from pathlib import Path

from bench.peers.base import Peer, Running, ServeSpec, launch

__all__ = ["PyftpdlibPeer"]

_READY = re.compile(r"bench-peer listening on 127\.0\.0\.1:(\d+)")


class PyftpdlibPeer(Peer):
    name = "pyftpdlib"
    notes = (
        "single process: its multi-process mode shares one epoll across forks and hangs under load",
        "listen backlog 1024 (its default of 100 drops connection bursts)",
        "FTPS (10-14): TLS_FTPHandler on pyOpenSSL, TLS required; it does not check that "
        "data connections resume the control session",
    )

    def version(self) -> str:
        return metadata.version("pyftpdlib")

    def unavailable(self) -> str | None:
        try:
            metadata.version("pyftpdlib")
        except metadata.PackageNotFoundError:
            return "pyftpdlib is not installed (pip install -e '.[bench]')"
        return None

    def cannot_serve(self, spec: ServeSpec) -> str | None:
        if spec.write_speed_limit is not None:
            return "pyftpdlib throttles per connection only (ThrottledDTPHandler)"
        if spec.tls is not None and importlib.util.find_spec("OpenSSL") is None:
            return "pyftpdlib's TLS_FTPHandler needs pyOpenSSL (pip install -e '.[bench]')"
        return None

    async def start(self, spec: ServeSpec, workdir: Path) -> Running:
        argv = [sys.executable, "-m", "bench.peers.pyftpdlib_peer"]
        argv += ["--root", str(spec.root), "--user", spec.user, "--password", spec.password]
        if spec.tls is not None:
            argv += ["--certificate", str(spec.tls.certificate)]
            argv += ["--private-key", str(spec.tls.private_key)]
        process, match, log = await launch(argv, workdir, _READY, name=self.name)
        return Running("127.0.0.1", int(match.group(1)), process, log)


def _serve(root: str, user: str, password: str, tls: tuple[str, str] | None) -> None:
    # Only the server process needs pyftpdlib; the harness imports this module without it.
    from pyftpdlib.authorizers import DummyAuthorizer  # noqa: PLC0415
    from pyftpdlib.handlers import FTPHandler  # noqa: PLC0415
    from pyftpdlib.servers import FTPServer  # noqa: PLC0415

    # A configured root logger stops pyftpdlib from installing its own INFO
    # logging, which would log every session and slow it down.
    logging.basicConfig(level=logging.WARNING)
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, root, perm="elradfmwMT")
    handler = type("BenchHandler", (FTPHandler,), {"authorizer": authorizer})
    if tls is not None:
        # TLS required for logins and data, as for every FTPS peer; TLS 1.2 and 1.3;
        # pyftpdlib has no check of data-session reuse.
        from pyftpdlib.handlers import TLS_FTPHandler  # noqa: PLC0415 - needs pyOpenSSL

        attributes = {"authorizer": authorizer, "certfile": tls[0], "keyfile": tls[1]}
        attributes |= {"tls_control_required": True, "tls_data_required": True}
        handler = type("BenchTLSHandler", (TLS_FTPHandler,), attributes)
    server = FTPServer(("127.0.0.1", 0), handler, backlog=1024)
    server.max_cons = 0  # unlimited, like every other peer (default 512)
    port = server.socket.getsockname()[1]
    print(f"bench-peer listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever(handle_exit=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--certificate")
    parser.add_argument("--private-key")
    args = parser.parse_args()
    tls = (args.certificate, args.private_key) if args.certificate else None
    _serve(args.root, args.user, args.password, tls)
