"""``ftp-cluster bans list [--json] | add IP [--for SECONDS] | remove IP``.

Works on a running cluster through its Redis: found from ``--config FILE``
(its ``[redis]`` url and namespace) or, by default, from the supervisor of
``--pid-file`` (which knows the embedded Redis's address too). The
``[defender]`` table (``ban_time``, its escalation, the safelist, the IPv6
prefix) comes from the same configuration file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ftp_cluster.shared.config import ConfigError, load_config
from ftp_cluster.shared.settings import DefenderSettings

__all__ = ["add_parser", "run"]


def add_parser(commands: Any, pid_file: Path) -> None:
    """Register ``bans`` and its three verbs on the CLI's subparsers."""
    bans = commands.add_parser("bans", help="list, add or remove bans of IP addresses")
    verbs = bans.add_subparsers(dest="bans_command", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="the bans in force")
    listing.add_argument("--json", action="store_true", help="print JSON")
    add = verbs.add_parser("add", help="ban an IP (IPv6: its network) on every worker")
    add.add_argument("ip", metavar="IP")
    add.add_argument(
        "--for",
        dest="seconds",
        type=float,
        metavar="SECONDS",
        help="how long (default: [defender] ban_time, longer for a repeated ban)",
    )
    remove = verbs.add_parser("remove", help="lift a ban and forget the IP's score")
    remove.add_argument("ip", metavar="IP")
    for verb in (listing, add, remove):
        verb.add_argument("--config", type=Path, help="TOML configuration file of the cluster")
        verb.add_argument("--pid-file", type=Path, default=pid_file, help="pid file")


def _fail(message: str, code: int = 1) -> int:
    print(f"ftp-cluster bans: {message}", file=sys.stderr, flush=True)
    return code


def _target(args: argparse.Namespace) -> tuple[str, str, DefenderSettings]:
    """The Redis URL, namespace and defender settings to work with."""
    from ftp_cluster.supervisor.control import request  # noqa: PLC0415

    if args.config is not None:
        config = load_config(args.config)
        if config.redis.url is not None:
            return config.redis.url, config.redis.namespace, config.defender
        # An embedded Redis: only the running supervisor knows where it is.
    status = request(args.pid_file, "status")
    info = status.get("redis") or {}
    url, namespace = info.get("url"), info.get("namespace")
    if not isinstance(url, str) or not isinstance(namespace, str):
        raise ConfigError("this cluster has no Redis (one worker, no bans shared)", line=None)
    defender = DefenderSettings()
    source = status.get("config") if args.config is None else args.config
    if source:
        defender = load_config(source).defender
    return url, namespace, defender


def run(args: argparse.Namespace) -> int:
    """Carry out one ``bans`` verb; the exit status."""
    import redis  # noqa: PLC0415 - the other commands need no Redis client

    from ftp_cluster.shared.limits.redis.bans_admin import (  # noqa: PLC0415
        add_ban,
        list_bans,
        remove_ban,
    )
    from ftp_cluster.supervisor.control import ControlError  # noqa: PLC0415

    try:
        url, namespace, defender = _target(args)
        if args.bans_command == "list":
            bans = list_bans(url, namespace)
            if args.json:
                rows = [
                    {"ip": b.offender, "seconds_left": round(b.seconds, 3), "ban": b.number}
                    for b in bans
                ]
                print(json.dumps(rows, indent=2))
            elif not bans:
                print("no bans")
            for ban in [] if args.json else bans:
                print(f"{ban.offender}  {ban.seconds:.0f} s left  (ban {ban.number} today)")
        elif args.bans_command == "add":
            if args.seconds is not None and args.seconds <= 0:
                return _fail("--for must be a positive number of seconds", 2)
            ban = add_ban(url, namespace, defender, args.ip, args.seconds)
            print(f"banned {ban.offender} for {ban.seconds:.0f} s (ban {ban.number} today)")
        elif remove_ban(url, namespace, defender, args.ip):
            print(f"ban of {args.ip} removed")
        else:
            print(f"{args.ip} was not banned (its score is forgotten)")
    except ConfigError as exc:
        return _fail(f"config error: {exc}", 2)
    except ValueError as exc:
        return _fail(str(exc), 2)
    except ControlError as exc:
        return _fail(f"{exc} (give --config FILE for a cluster with an external Redis)")
    except (redis.RedisError, redis.RedisClusterException, OSError) as exc:
        return _fail(f"Redis is unreachable: {exc}")
    return 0
