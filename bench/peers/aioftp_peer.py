"""aioftp as a peer, on uvloop (the event loop ftp-cluster's workers use).

Run as a program (``python -m bench.peers.aioftp_peer ...``) it is the server;
imported, it is the harness's handle on it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from importlib import metadata
from pathlib import Path

from bench.peers.base import Peer, Running, ServeSpec, launch

__all__ = ["AioftpPeer"]

_READY = re.compile(r"bench-peer listening on 127\.0\.0\.1:(\d+)")


class AioftpPeer(Peer):
    name = "aioftp"
    notes = (
        "runs on uvloop; default PathIO; listen backlog 1024 (asyncio's default of 100 "
        "drops connection bursts)",
        "its write_speed_limit is server-wide within its single process",
    )

    def version(self) -> str:
        return metadata.version("aioftp")

    def unavailable(self) -> str | None:
        try:
            metadata.version("aioftp")
        except metadata.PackageNotFoundError:
            return "aioftp is not installed (pip install -e '.[bench]')"
        return None

    def cannot_serve(self, spec: ServeSpec) -> str | None:
        if spec.tls is not None:
            return "aioftp has no explicit FTPS (AUTH TLS): its ssl= option is implicit TLS only"
        return None

    async def start(self, spec: ServeSpec, workdir: Path) -> Running:
        argv = [sys.executable, "-m", "bench.peers.aioftp_peer"]
        argv += ["--root", str(spec.root), "--user", spec.user, "--password", spec.password]
        if spec.write_speed_limit is not None:
            argv += ["--write-speed-limit", str(spec.write_speed_limit)]
        if spec.maximum_connections is not None:
            argv += ["--maximum-connections", str(spec.maximum_connections)]
        process, match, log = await launch(argv, workdir, _READY, name=self.name)
        return Running("127.0.0.1", int(match.group(1)), process, log)


async def _serve(args: argparse.Namespace) -> None:
    import aioftp  # noqa: PLC0415 - only the server process needs it, not the harness

    logging.basicConfig(level=logging.WARNING)
    user = aioftp.User(args.user, args.password, base_path=Path(args.root), home_path="/")
    server = aioftp.Server(
        [user],
        write_speed_limit=args.write_speed_limit,
        maximum_connections=args.maximum_connections,
    )
    await server.start("127.0.0.1", 0, backlog=1024)
    print(f"bench-peer listening on 127.0.0.1:{server.address[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--write-speed-limit", type=int)
    parser.add_argument("--maximum-connections", type=int)
    try:
        uvloop.run(_serve(parser.parse_args()))
    except KeyboardInterrupt:
        pass
    except asyncio.CancelledError:
        pass
