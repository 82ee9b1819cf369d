"""One benchmark run: prepare files and peers, run every scenario against every server, clean up.

Scenarios are the outer loop and servers the inner one, so the figures that a
ratio compares are measured minutes apart, not an hour apart; scenarios with a
``merge`` (3 to 5) go further and run in rounds of every server once, seconds
apart. Each server is started fresh for each scenario (or round) and stopped
after it.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import traceback
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.files import Dataset, raise_fd_limit
from bench.machine import describe
from bench.peers import Peer, PeerUnavailable, build_peers
from bench.peers.ftp_cluster import FtpClusterPeer
from bench.private_postgres import PrivatePostgres
from bench.private_redis import PrivateRedis
from bench.proctree import LoadWatch
from bench.rawlimit import measure_once, start_sender
from bench.report import Progress
from bench.scenarios import (
    FTPS_KEYS,
    Context,
    Merger,
    RunPlan,
    Scenario,
    Settings,
    failed_sessions,
    make_certificate,
    raw_limit,
)
from bench.scenarios.accounts import prepare_database
from bench.scenarios.scale import SESSIONS_PER_IDLE as CROWD_SESSIONS_PER_IDLE
from bench.targets import evaluate

__all__ = ["Options", "run"]

_FOREIGN_CPU_WARNING = 0.2  # cores used by other programs that make a scenario suspect


@dataclass(frozen=True)
class Options:
    settings: Settings
    scenarios: list[Scenario]
    servers: list[str]
    workers: list[int]
    out: Path
    quick: bool
    data_dir: Path | None = None  # parent of the test files; None: tmpfs when roomy


def _sizes(options: Options) -> dict[str, int]:
    keys = {s.key for s in options.scenarios}
    settings = options.settings
    sizes = {}
    if keys & {"retr_single", "stor_single", "ftps_retr_single", "ftps_stor_single"}:
        sizes["single"] = settings.single_size
    if keys & {"retr_many", "stor_many", "crowd10k"}:
        sizes["many"] = settings.many_size
    if "throttle" in keys:
        sizes["throttle"] = settings.throttle_size
    return sizes


def _needed_space(options: Options, sizes: dict[str, int]) -> int:
    settings = options.settings
    uploads = max(settings.single_size, settings.clients * settings.many_size)
    return sum(sizes.values()) + uploads


def _raw_runs(repeat: int) -> int:
    """Loopback is bimodal (one core or two); the limit is cheap, so take more tries at it."""
    return max(10, 2 * repeat)


async def _raw_limit(ctx: Context, progress: Progress) -> None:
    """Start the raw sender (kept for scenario 1's adjacent runs) and take the first runs."""
    progress.step("raw loopback sendfile (no FTP)")
    ctx.raw_sender = await start_sender(ctx.dataset.real("/files/single.bin"), ctx.dataset.work)
    runs = _raw_runs(ctx.settings.repeat)
    for run in range(runs):
        progress.detail(f"run {run + 1}/{runs}")
        rate = await measure_once(ctx.raw_sender, ctx.settings.single_size, ctx.settings.timeout)
        ctx.raw_rates.append(rate)
    raw = raw_limit(ctx.raw_rates, ctx.settings.single_size)
    progress.finish(f"{raw['mb_s_best']:.0f} MB/s best, {raw['mb_s_median']:.0f} median")


def _summary(scenario: Scenario, figures: dict[str, Any]) -> str:
    if "skipped" in figures:
        return f"skipped: {figures['skipped']}"
    if "error" in figures:
        return f"ERROR: {figures['error']}"
    value = figures.get(scenario.headline)
    text = f"{value:.4g} {scenario.unit}" if isinstance(value, int | float) else "no figure"
    failed = failed_sessions(figures)
    return text + (f"  (failures: {failed})" if failed else "")


class _Run:
    """State of one run: the results document being filled in."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.peers = build_peers(options.servers, options.workers)
        self.usable: list[Peer] = []
        self.warnings: list[str] = []
        self.results: dict[str, Any] = {
            "harness": "ftp-cluster bench (bench/README.md)",
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": options.quick,
            "options": asdict(options.settings)
            | {
                "servers": options.servers,
                "workers": options.workers,
                "scenarios": [s.key for s in options.scenarios],
            },
            "peers": {},
            "scenarios": {},
            "warnings": self.warnings,
        }

    def check_peers(self) -> None:
        for peer in self.peers:
            reason = peer.unavailable()
            entry: dict[str, Any] = {"version": peer.version() if reason is None else None}
            entry |= {"notes": list(peer.notes), "skipped": reason}
            self.results["peers"][peer.name] = entry
            if reason is None:
                self.usable.append(peer)

    def setup_peers(self, dataset: Dataset, user: str, password: str) -> None:
        for peer in list(self.usable):
            try:
                peer.setup(dataset.root, user, password)
            except (PeerUnavailable, OSError) as exc:
                self.results["peers"][peer.name]["skipped"] = str(exc)
                self.usable.remove(peer)

    def teardown_peers(self) -> None:
        for peer in self.peers:
            try:
                peer.teardown()
            except Exception as exc:  # report it, and still tear the others down
                self.warnings.append(f"{peer.name}: teardown failed: {exc}")

    def plans(self, ctx: Context) -> list[tuple[Scenario, list[RunPlan]]]:
        plans = []
        for scenario in self.options.scenarios:
            entries = scenario.plan(ctx, self.peers)
            plans.append((scenario, entries))
            for plan in entries:  # a variant peer of a scenario (9) may not be in --servers
                if plan.peer not in self.usable and plan.peer.name not in self.results["peers"]:
                    reason = plan.peer.unavailable()
                    self.results["peers"][plan.peer.name] = {
                        "version": plan.peer.version() if reason is None else None,
                        "notes": list(plan.peer.notes),
                        "skipped": reason,
                    }
                    if reason is None:
                        self.usable.append(plan.peer)
        return plans

    def skip_reason(self, plan: RunPlan) -> str | None:
        if plan.peer not in self.usable:
            return str(self.results["peers"][plan.peer.name]["skipped"])
        return plan.skip

    async def scenario_runs(
        self, ctx: Context, scenario: Scenario, entries: list[RunPlan], progress: Progress
    ) -> dict[str, Any]:
        """Every server's figures for ``scenario``, in the order of ``entries``."""
        if scenario.merge is not None:
            return await self._rounds(ctx, scenario, scenario.merge, entries, progress)
        runs: dict[str, Any] = {}
        for plan in entries:
            runs[plan.label] = await self.one(ctx, scenario, plan, progress)
            progress.finish(_summary(scenario, runs[plan.label]))
        return runs

    async def _rounds(
        self,
        ctx: Context,
        scenario: Scenario,
        merge: Merger,
        entries: list[RunPlan],
        progress: Progress,
    ) -> dict[str, Any]:
        rounds = ctx.settings.repeat_many
        done: dict[str, list[dict[str, Any]]] = {plan.label: [] for plan in entries}
        for number in range(rounds):
            # Alternating the order cancels a steady drift between neighbours.
            for plan in entries if number % 2 == 0 else entries[::-1]:
                figures = done[plan.label]
                if figures and ("skipped" in figures[-1] or "error" in figures[-1]):
                    progress.total -= 1  # not tried again
                    continue
                step = f" (round {number + 1}/{rounds})" if rounds > 1 else ""
                figures.append(await self.one(ctx, scenario, plan, progress, step))
                progress.finish(_summary(scenario, figures[-1]))
        runs: dict[str, Any] = {}
        for plan in entries:
            merged = merge(done[plan.label])
            if "foreign_cpu_cores" in merged:
                merged["foreign_cpu_cores"] = max(f["foreign_cpu_cores"] for f in done[plan.label])
            if "warning" in merged:
                self.warnings.append(f"{scenario.key} / {plan.label}: {merged['warning']}")
            runs[plan.label] = merged
        return runs

    async def one(
        self,
        ctx: Context,
        scenario: Scenario,
        plan: RunPlan,
        progress: Progress,
        step: str = "",
    ) -> dict[str, Any]:
        progress.step(f"{scenario.number}. {scenario.title} · {plan.label}{step}")
        reason = self.skip_reason(plan)
        if reason is not None:
            return {"skipped": reason}
        if ctx.redis is not None and plan.spec.redis_url is not None:
            ctx.redis.flush()
        try:
            server = await plan.peer.start(plan.spec, ctx.dataset.work)
        except PeerUnavailable as exc:
            return {"skipped": str(exc)}
        if plan.spec.tls is not None:  # the client speaks FTPS to this run
            server.tls_ca = plan.spec.tls.certificate
        if "password_hash" in server.extra:
            self.results["peers"][plan.peer.name]["password_hash"] = server.extra["password_hash"]
        watch = LoadWatch(server_pid=server.pid)
        watch.start()
        try:
            figures = await scenario.run(ctx, server, plan.spec)
            if server.process.poll() is not None:
                figures["server_exited"] = server.process.returncode
                self.warnings.append(
                    f"{plan.label} exited (rc={server.process.returncode}) during {scenario.key}"
                )
        except Exception as exc:  # one server's failure must not end the whole run
            figures = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        finally:
            disturbance = watch.stop()
            await server.stop()
            ctx.dataset.clear_uploads()
        if "error" in figures or failed_sessions(figures):
            figures["log"] = str(self._keep_log(server.log, f"{scenario.key}-{plan.label}"))
        figures["foreign_cpu_cores"] = round(disturbance.foreign_cores, 3)
        if disturbance.foreign_cores > _FOREIGN_CPU_WARNING:
            self.warnings.append(
                f"{scenario.key} / {plan.label}: other programs used "
                f"{disturbance.foreign_cores:.2f} cores (busiest: {disturbance.busiest}); "
                "its figures are disturbed"
            )
        if "warning" in figures:
            self.warnings.append(f"{scenario.key} / {plan.label}: {figures['warning']}")
        return figures

    def _keep_log(self, log: Path, name: str) -> Path:
        """Copy a server's log out of the (temporary) work directory into the results."""
        target = self.options.out / "logs" / f"{name.replace(' ', '_')}.log"
        target.parent.mkdir(parents=True, exist_ok=True)
        if log.exists():
            shutil.copyfile(log, target)
        return target


def _needs_redis(options: Options, peers: list[Peer]) -> bool:
    wanted = {s.key for s in options.scenarios} & {"throttle", "redis_cost"}
    return bool(wanted) and any(isinstance(peer, FtpClusterPeer) for peer in peers)


async def _start_redis(state: _Run, ctx: Context, redis: PrivateRedis) -> None:
    if not _needs_redis(state.options, state.usable):
        return
    try:
        await redis.start(ctx.dataset.work)
    except PeerUnavailable as exc:
        state.warnings.append(f"private redis-server: {exc}")
        return
    ctx.redis = redis
    state.results["private_redis"] = {"url": redis.url, "version": redis.version()}


async def _start_postgres(state: _Run, ctx: Context, postgres: PrivatePostgres) -> None:
    """Scenario 16's database: started and filled before the plans (they name its URL)."""
    wanted = any(s.key == "accounts_db" for s in state.options.scenarios)
    if not wanted or not any(isinstance(peer, FtpClusterPeer) for peer in state.usable):
        return
    try:
        await postgres.start()
        await prepare_database(postgres.url, ctx.settings.clients)
    except (PeerUnavailable, RuntimeError, OSError) as exc:
        ctx.postgres_missing = f"private PostgreSQL: {exc}"
        state.warnings.append(ctx.postgres_missing)
        return
    ctx.postgres = postgres
    state.results["private_postgres"] = {"url": postgres.url, "version": postgres.version()}


async def _scenarios(state: _Run, ctx: Context, progress_stream: Any) -> None:
    plans = state.plans(ctx)
    measure_raw = any(s.key == "retr_single" for s in state.options.scenarios)
    rounds = state.options.settings.repeat_many
    total = sum(len(entries) * (rounds if s.merge else 1) for s, entries in plans)
    total += int(measure_raw)
    progress = Progress(total, progress_stream)
    ctx.reporter = progress
    progress.start()
    try:
        if measure_raw:
            try:
                await _raw_limit(ctx, progress)
            except (PeerUnavailable, OSError, TimeoutError) as exc:
                state.warnings.append(f"raw sendfile limit not measured: {exc}")
                progress.finish(f"failed: {exc}")
        for scenario, entries in plans:
            runs: dict[str, Any] = {}
            state.results["scenarios"][scenario.key] = {
                "number": scenario.number,
                "title": scenario.title,
                "headline": scenario.headline,
                "unit": scenario.unit,
                "lower_is_better": scenario.lower_is_better,
                "results": runs,
            }
            runs.update(await state.scenario_runs(ctx, scenario, entries, progress))
            summary = scenario.summarize(ctx, runs)
            state.results["scenarios"][scenario.key]["summary"] = summary
            for key in ("raw_limit", "raw_tls_limit"):
                if key in summary:
                    state.results[key] = summary[key]
    finally:
        progress.close()
        for sender in (ctx.raw_sender, ctx.raw_tls_sender):
            if sender is not None:
                await sender.stop()


def _versions(results: dict[str, Any]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for name, entry in results["peers"].items():
        if entry.get("version"):
            # ftp-cluster-1/-2/-4 are one program.
            key = "ftp-cluster" if name.startswith("ftp-cluster") else name
            versions[key] = entry["version"]
    if "private_redis" in results:
        versions["redis-server"] = results["private_redis"]["version"]
    if "private_postgres" in results:
        versions["postgresql"] = results["private_postgres"]["version"]
    for package in ("uvloop", "psutil", "redis", "matplotlib"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


async def run(options: Options, progress_stream: Any = None) -> dict[str, Any]:
    """Run the benchmark and return the results document (see bench/README.md)."""
    settings = options.settings
    state = _Run(options)
    results = state.results
    wanted_fds = settings.idle_sessions * 3 + settings.clients * 4 + 1024
    if any(s.key == "crowd10k" for s in options.scenarios):
        # pyftpdlib holds all of scenario 15's sessions (and their data connections) alone.
        wanted_fds = max(wanted_fds, CROWD_SESSIONS_PER_IDLE * settings.idle_sessions * 2 + 1024)
    results["rlimit_nofile"] = list(raise_fd_limit(wanted_fds))
    state.check_peers()
    sizes = _sizes(options)
    dataset = Dataset.create(sizes, _needed_space(options, sizes), options.data_dir)
    results["data"] = {"dir": str(dataset.base), "tmpfs": dataset.on_tmpfs, "files": sizes}
    if not dataset.on_tmpfs:
        state.warnings.append(f"test files are not on tmpfs ({dataset.base}): disk speed may show")
    user, password = f"ftpbench{secrets.token_hex(3)}", secrets.token_hex(12)
    redis = PrivateRedis()
    postgres = PrivatePostgres()
    try:
        state.setup_peers(dataset, user, password)
        ctx = Context(settings, dataset, user, password)
        if any(s.key in FTPS_KEYS for s in options.scenarios):
            ctx.tls = make_certificate(dataset.work)  # removed with the test files
        await _start_redis(state, ctx, redis)
        await _start_postgres(state, ctx, postgres)
        await _scenarios(state, ctx, progress_stream)
    finally:
        await redis.stop()
        await postgres.stop()
        state.teardown_peers()
        dataset.remove()
    results["machine"] = describe(_versions(results))
    results["targets"] = evaluate(results)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results
