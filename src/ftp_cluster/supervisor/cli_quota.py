"""``ftp-cluster quota show LOGIN [--json]`` and ``quota scan LOGIN``: users' disk tallies.

Both work on the Redis a cluster keeps its tallies in. With ``--config FILE``
that is the file's ``[redis] url``; otherwise (``--pid-file``, by default the
usual one) the running cluster says which Redis and config file it uses,
which also covers the private Redis a cluster starts without a URL. The
user, its quota and its directory come from the config file.

``show`` prints the tally against the quota. ``scan`` counts what lies under
the user's real directory (also files changed outside FTP) and sets the
tally to it. A scan while the user's uploads run may be off by what they
reserved and have not written yet; the next scan corrects that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ftp_cluster.shared.config import ConfigError, load_config
from ftp_cluster.shared.limits.base import QuotaLimits, Usage
from ftp_cluster.shared.settings import ClusterConfig
from ftp_cluster.shared.users import User

__all__ = ["add_quota_parser", "run_quota"]


def add_quota_parser(commands: Any, default_pid_file: Path) -> None:
    """Register ``quota show`` and ``quota scan`` on the top-level subparsers."""
    quota = commands.add_parser("quota", help="users' disk usage against their quotas")
    verbs = quota.add_subparsers(dest="quota_command", required=True)
    show = verbs.add_parser("show", help="a user's tally of bytes and files, and the quota")
    show.add_argument("--json", action="store_true", help="print JSON")
    scan = verbs.add_parser("scan", help="count the user's directory and set the tally to it")
    for sub in (show, scan):
        sub.add_argument("login", help="the user's login name")
        sub.add_argument("--config", type=Path, help="TOML configuration file (its [redis] url)")
        sub.add_argument(
            "--pid-file",
            type=Path,
            default=default_pid_file,
            help="pid file of the running cluster (without --config)",
        )


@dataclass(frozen=True)
class _Target:
    """Where the tally lives and whose it is."""

    url: str
    namespace: str
    user: User
    limits: QuotaLimits
    root: Path


def run_quota(args: argparse.Namespace) -> int:
    """Run ``quota show`` or ``quota scan``; the exit status."""
    # Here, not at the top: the other verbs of the command need no Redis client.
    import redis.exceptions  # noqa: PLC0415

    from ftp_cluster.shared.limits.redis.connection import redact, sync_client  # noqa: PLC0415
    from ftp_cluster.shared.limits.redis.schema import QUOTA_SET, Keys  # noqa: PLC0415

    try:
        target = _target(args)
    except (ConfigError, LookupError, OSError, ValueError) as error:
        print(f"ftp-cluster quota: {error}")
        return 2
    usage: Usage | None = None
    if args.quota_command == "scan":
        try:
            usage = asyncio.run(_scan(target.root))
        except OSError as error:
            print(f"ftp-cluster quota: cannot scan {target.root}: {error}")
            return 1
    connection = sync_client(target.url, timeout=2.0)
    key = Keys(target.namespace).quota(target.user.key)
    try:
        if usage is not None:
            connection.client.execute_command(  # type: ignore[no-untyped-call]
                "EVAL", QUOTA_SET.source, 1, key, usage.bytes, usage.files, 0
            )
            print(f"{target.user.key}: {_describe(usage, target.limits)} (scanned {target.root})")
            return 0
        found: list[Any] = connection.client.hmget(key, ["bytes", "files"])
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError) as error:
        print(f"ftp-cluster quota: Redis at {redact(target.url)}: {error}")
        return 1
    finally:
        connection.close()
    known = None if None in found else Usage(int(found[0]), int(found[1]))
    if args.json:
        print(json.dumps(_as_json(target, known), indent=2, sort_keys=True))
    else:
        print(f"{target.user.key}: {_describe(known, target.limits)}")
    return 0


def _target(args: argparse.Namespace) -> _Target:
    if args.config is not None:
        config = load_config(args.config)
        if config.redis.url is None:
            raise LookupError(
                f"{args.config} has no [redis] url: give --pid-file of the running cluster"
            )
        url, namespace, root = config.redis.url, config.redis.namespace, config.server.root
    else:
        from ftp_cluster.supervisor.control import ControlError, request  # noqa: PLC0415

        try:
            status = request(args.pid_file, "status")
        except ControlError as error:
            raise LookupError(f"no running cluster ({error}); give --config FILE") from None
        source = status.get("config")
        config = load_config(Path(source)) if source else ClusterConfig()
        redis_info = status.get("redis") or {}
        url, namespace = str(redis_info.get("url")), str(redis_info.get("namespace"))
        root = Path(status.get("root") or config.server.root)
    user = next((u for u in config.users if u.login == args.login), None)
    if user is None:
        raise LookupError(f"no user {args.login!r} in the configuration")
    server = config.server
    limits = user.quota_limits(server.default_quota_bytes, server.default_quota_files)
    return _Target(url, namespace, user, limits, user.base_path or root)


async def _scan(root: Path) -> Usage:
    # The worker's own scan, through the same path IO: the same files count.
    from ftp_cluster.worker.pathio.local import PathIO  # noqa: PLC0415
    from ftp_cluster.worker.quota import scan  # noqa: PLC0415

    path_io = PathIO()
    real = PurePosixPath(path_io.real_root(root))
    if not (await path_io.info(real)).is_dir:
        raise NotADirectoryError(f"the user's directory {root} is not a directory")
    return await scan(path_io, real)


def _describe(usage: Usage | None, limits: QuotaLimits) -> str:
    if usage is None:
        return "not counted yet (the first login counts it; or run `quota scan`)"
    return (
        f"{usage.bytes} of {_limit(limits.bytes)} bytes, "
        f"{usage.files} of {_limit(limits.files)} files used"
    )


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def _as_json(target: _Target, usage: Usage | None) -> dict[str, Any]:
    return {
        "login": target.user.key,
        "counted": usage is not None,
        "bytes": {"used": usage.bytes if usage else None, "limit": target.limits.bytes},
        "files": {"used": usage.files if usage else None, "limit": target.limits.files},
    }
