"""The ``ftp-cluster`` command: start, stop, reload, status, bans, quota, users, hash-password, ...

The ``start`` flags are not written out here: every settings field whose
:class:`~ftp_cluster.shared.fields.Spec` says ``cli`` (see
:mod:`ftp_cluster.shared.settings`) becomes a flag, with that field's type and
help (``[redis]`` and ``[tls]`` fields get a ``--redis-`` or ``--tls-``
prefix). A flag overrides the config file, at start and at every reload. So
do the accounts of ``--user``.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import importlib
import json
import logging
import os
import sys
import tempfile
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftp_cluster.shared import logformat
from ftp_cluster.shared.config import (
    ConfigError,
    apply_overrides,
    check_setting,
    load_config,
    setting_specs,
)
from ftp_cluster.shared.fields import Invalid
from ftp_cluster.shared.passwords import DEFAULT_SCHEME, SCHEMES, hash_password
from ftp_cluster.shared.settings import (
    ClusterConfig,
    LoggingSettings,
    MetricsSettings,
    RedisSettings,
    ServerSettings,
    TLSSettings,
)
from ftp_cluster.shared.users import Permission, User
from ftp_cluster.supervisor import cli_bans
from ftp_cluster.supervisor.cli_logs import add_reopen_logs, reopen_logs
from ftp_cluster.supervisor.cli_quota import add_quota_parser, run_quota
from ftp_cluster.supervisor.cli_users import add_users_parser, run_users, warn_overlaps
from ftp_cluster.worker.stats import FIGURES

__all__ = ["build_parser", "cli_settings", "main", "parse_user"]

log = logging.getLogger("ftp_cluster.supervisor")

_SECTIONS: tuple[tuple[str, type[Any], str], ...] = (
    ("server", ServerSettings, ""),
    ("redis", RedisSettings, "redis-"),
    ("tls", TLSSettings, "tls-"),
    ("logging", LoggingSettings, "log-"),
    ("metrics", MetricsSettings, "metrics-"),
)
_USER_HELP = (
    "add an account LOGIN with password PASSWORD (split at the first ':'), home '/' and "
    "read and write access to '/' (that is, [server] root); repeatable. It replaces a "
    "[[users]] entry of the same login; with any account given, there is no default "
    "anonymous one. The password is visible to other local users in the process list: in "
    "production, give users in the config file, with password_hash"
)
_PRELOAD = (
    "ftp_cluster.worker.server",
    "ftp_cluster.shared.limits.local",
    "ftp_cluster.shared.limits.redis.backend",
)


@dataclasses.dataclass(frozen=True, slots=True)
class CliSetting:
    """A settings field exposed as a ``start`` flag."""

    key: str  # "server.port"
    flag: str  # "--port"
    dest: str  # argparse attribute
    kind: type[Any]
    help: str


def cli_settings() -> list[CliSetting]:
    """The settings fields marked ``cli``, in declaration order."""
    found: list[CliSetting] = []
    for section, cls, prefix in _SECTIONS:
        defaults = {field.name: field.default for field in dataclasses.fields(cls)}
        for field_name, (spec, tp) in setting_specs(cls).items():
            if not spec.cli:
                continue
            name = prefix + field_name.replace("_", "-")
            default = defaults[field_name]
            found.append(
                CliSetting(
                    key=f"{section}.{field_name}",
                    flag=f"--{name}",
                    dest=name.replace("-", "_"),
                    kind=_scalar(tp),
                    help=spec.help if default is None else f"{spec.help} (default: {default})",
                )
            )
    return found


def _scalar(tp: Any) -> type[Any]:
    """``int | None`` -> ``int``: what argparse converts the text to."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    inner = args[0] if args else tp
    if inner in (int, float, str, Path):
        return typing.cast(type[Any], inner)
    return str


def default_pid_file() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "ftp-cluster.pid"
    return Path(tempfile.gettempdir()) / f"ftp-cluster-{os.getuid()}.pid"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftp-cluster", description="An FTP server with cluster-wide limits in Redis."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = commands.add_parser("start", help="run the cluster in the foreground")
    start.add_argument("--config", type=Path, help="TOML configuration file")
    for setting in cli_settings():
        metavar = setting.dest.rsplit("_", 1)[-1].upper()
        start.add_argument(
            setting.flag, dest=setting.dest, type=setting.kind, help=setting.help, metavar=metavar
        )
    start.add_argument(
        "--user",
        action="append",
        default=[],
        dest="users",
        metavar="LOGIN:PASSWORD",
        help=_USER_HELP,
    )
    start.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    stop = commands.add_parser("stop", help="graceful stop; waits until it has exited")
    stop.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default: 60)")
    stop.add_argument("--fast", action="store_true", help="drop sessions instead of draining")
    commands.add_parser("reload", help="re-read the configuration and replace the workers")
    status = commands.add_parser("status", help="workers, Redis and cluster-wide counts")
    status.add_argument("--json", action="store_true", help="print JSON")
    add_reopen_logs(commands)
    for sub in (start, stop, commands.choices["reload"], status, commands.choices["reopen-logs"]):
        sub.add_argument("--pid-file", type=Path, default=default_pid_file(), help="pid file")
    add_quota_parser(commands, default_pid_file())
    cli_bans.add_parser(commands, default_pid_file())
    hashing = commands.add_parser("hash-password", help="print a password hash for the config file")
    hashing.add_argument(
        "--scheme",
        choices=SCHEMES,
        default=DEFAULT_SCHEME,
        help=f"hash format (default: {DEFAULT_SCHEME})",
    )
    certificate = commands.add_parser(
        "self-signed-certificate", help="write a certificate and key for trying FTPS"
    )
    certificate.add_argument("--out", type=Path, required=True, help="directory to write into")
    certificate.add_argument(
        "--host",
        action="append",
        help="host name or address the certificate is for (repeatable; default: localhost "
        "and 127.0.0.1)",
    )
    add_users_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``ftp-cluster`` script."""
    args = build_parser().parse_args(argv)
    handlers = {
        "start": _start,
        "stop": _stop,
        "reload": _reload,
        "status": _status,
        "quota": run_quota,
        "bans": cli_bans.run,
        "hash-password": _hash_password,
        "self-signed-certificate": _self_signed,
        "users": run_users,
        "reopen-logs": reopen_logs,
    }
    sys.exit(handlers[args.command](args))


def _fail(message: str, code: int = 1) -> int:
    print(f"ftp-cluster: {message}", file=sys.stderr, flush=True)
    return code


# --------------------------------------------------------------------- start


def parse_user(text: str) -> User:
    """A ``--user LOGIN:PASSWORD`` value as an account with read and write access to ``/``.

    The password is what follows the first ``:`` (so it may contain more).
    Raises :class:`ConfigError`; its message never shows the password.
    """
    login, colon, password = text.partition(":")
    if not colon:
        raise ConfigError(
            "expected LOGIN:PASSWORD, but there is no ':' (the value is not shown: it may "
            "be a password)",
            key="--user",
            source="command line",
            line=None,
        )
    try:
        check_setting(User, "login", login)
    except Invalid as exc:
        message = f"the login {exc.describe()}"
        raise ConfigError(message, key="--user", source="command line", line=None) from None
    return User(login, password, home_path="/", permissions=(Permission("/"),))


def _load(args: argparse.Namespace) -> tuple[ClusterConfig, dict[str, object]]:
    overrides: dict[str, object] = {s.key: getattr(args, s.dest) for s in cli_settings()}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if args.users:
        # Kept with the other overrides, so that every reload adds them again.
        overrides["users"] = tuple(parse_user(text) for text in args.users)
    config = load_config(args.config) if args.config is not None else ClusterConfig()
    return apply_overrides(config, overrides), overrides


def _start(args: argparse.Namespace) -> int:
    from ftp_cluster.supervisor.arbiter import Arbiter  # noqa: PLC0415
    from ftp_cluster.supervisor.control import (  # noqa: PLC0415
        ControlError,
        ControlServer,
        PidFile,
        control_path,
    )
    from ftp_cluster.supervisor.embedded_redis import RedisMissingError  # noqa: PLC0415
    from ftp_cluster.supervisor.sockets import ListenError  # noqa: PLC0415

    logformat.start_buffering(args.log_level)  # until the file says which format
    try:
        config, overrides = _load(args)
    except ConfigError as exc:
        logformat.configure("text")
        return _fail(f"config error: {exc}", 2)
    warn_overlaps(config)
    logformat.configure(config.logging.format)
    for module in _PRELOAD:  # import once here rather than in every worker
        importlib.import_module(module)
    pid_file = PidFile(args.pid_file)
    try:
        pid_file.acquire()
    except (ControlError, OSError) as exc:
        return _fail(str(exc))
    arbiter = Arbiter(config, overrides=overrides)
    control: ControlServer | None = None
    try:
        handlers = {"status": arbiter.status, "reload": arbiter.reload}
        control = ControlServer(control_path(pid_file.path), handlers)
        arbiter.on_readable[control.fileno()] = control.handle
    except (ControlError, OSError) as exc:
        log.warning("no control socket (%s): `status` and `reload` will not work", exc)
    metrics = None
    if config.metrics.address is not None:
        from ftp_cluster.supervisor.metrics import open_metrics  # noqa: PLC0415

        try:
            metrics = open_metrics(arbiter, config.metrics.address)
        except OSError as exc:
            log.error("cannot serve metrics on %s: %s", config.metrics.listen, exc)
            if control is not None:
                control.close()
            pid_file.release()
            return 1
        host, _ = config.metrics.address
        shown = f"[{host}]" if ":" in host else host
        log.info("metrics on http://%s:%d/metrics", shown, metrics.port)
    try:
        code = arbiter.run()
    except (ListenError, RedisMissingError) as exc:
        log.error("%s", exc)
        code = 1
    finally:
        if control is not None:
            control.close()
        if metrics is not None:
            metrics.close()
        pid_file.release()
    log.info("stopped (exit status %d)", code)
    return code


# ------------------------------------------------------------- other commands


def _stop(args: argparse.Namespace) -> int:
    from ftp_cluster.supervisor.control import ControlError, stop  # noqa: PLC0415

    try:
        pid = stop(args.pid_file, args.timeout, fast=args.fast)
    except ControlError as exc:
        return _fail(str(exc))
    print(f"ftp-cluster (pid {pid}) stopped")
    return 0


def _reload(args: argparse.Namespace) -> int:
    from ftp_cluster.supervisor.control import ControlError, request  # noqa: PLC0415

    try:
        answer = request(args.pid_file, "reload")
    except ControlError as exc:
        return _fail(str(exc))
    if not answer.get("ok"):
        return _fail(f"reload failed: {answer.get('error')}")
    print(f"reloaded: configuration {answer.get('generation')}; replacing the workers")
    return 0


def _status(args: argparse.Namespace) -> int:
    from ftp_cluster.supervisor.control import ControlError, query_status  # noqa: PLC0415

    try:
        status = query_status(args.pid_file)
    except ControlError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(_format_status(status))
    return 0


def _size(count: object) -> str:
    value = float(count) if isinstance(count, int | float) else 0.0
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _counts(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) + "}"
    return str(value)


def _format_status(status: dict[str, Any]) -> str:
    lines = [
        f"ftp-cluster pid {status.get('pid')} on {status.get('address')}: {status.get('state')}, "
        f"up {status.get('uptime', 0):.0f} s, config {status.get('config') or '(none)'}",
    ]
    redis = status.get("redis") or {}
    if redis.get("url"):
        kind = "embedded" if redis.get("embedded") else "external"
        line = f"redis {redis['url']} ({kind}): {redis.get('state', '?')}"
        if redis.get("error"):
            line += f" ({redis['error']})"
        cluster = redis.get("cluster")
        if isinstance(cluster, dict):
            line += "; cluster-wide: " + ", ".join(
                f"{key} {_counts(value)}" for key, value in sorted(cluster.items())
            )
        lines.append(line)
    else:
        lines.append("redis: none (one worker, in-process limits)")
    # The figures' columns come from the one stats model (worker/stats.py).
    columns = [f for f in FIGURES if f.column is not None]
    widths = [max(len(f.column or ""), 10 if f.size else 6) for f in columns]
    heading = f"{'slot':>4}  {'pid':>7}  {'state':<9}  {'uptime':>8}"
    lines.append(
        heading + "".join(f"  {f.column:>{w}}" for f, w in zip(columns, widths, strict=True))
    )
    for worker in status.get("workers", []):
        row = (
            f"{worker['slot']:>4}  {worker['pid']:>7}  {worker['state']:<9}  "
            f"{worker['uptime']:>7.0f}s"
        )
        for figure, width in zip(columns, widths, strict=True):
            value = worker.get(figure.name, 0)
            row += f"  {_size(value) if figure.size else value:>{width}}"
        lines.append(row)
    return "\n".join(lines)


def _self_signed(args: argparse.Namespace) -> int:
    from ftp_cluster.supervisor.certificates import write_self_signed  # noqa: PLC0415

    hosts = args.host or ["localhost", "127.0.0.1"]
    try:
        cert, key = write_self_signed(args.out, hosts)
    except OSError as exc:
        return _fail(f"cannot write into {args.out}: {exc}")
    print(f"certificate: {cert}\nprivate key: {key}")
    print(f"start with: ftp-cluster start --tls-certificate {cert} --tls-private-key {key}")
    return 0


def _hash_password(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            return _fail("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        return _fail("empty password")
    try:
        print(hash_password(password, args.scheme))
    except ValueError as exc:  # bcrypt and a password longer than it reads
        return _fail(str(exc))
    return 0


if __name__ == "__main__":
    main()
