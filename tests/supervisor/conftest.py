"""Fixtures for the supervisor tests: real ``ftp-cluster`` processes."""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.supervisor.harness import Cluster, assert_no_secret

StartCluster = Callable[..., Cluster]


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[StartCluster]:
    """``start_cluster(args=[...], workers=N, config=TOML)``: a listening cluster.

    Every cluster started is killed at teardown, with all its descendants.
    """
    started: list[Cluster] = []

    def start(
        args: Sequence[str] = (),
        workers: int | None = 2,
        config: str | None = None,
        wait: bool = True,
    ) -> Cluster:
        directory = tmp_path / f"cluster{len(started)}"
        directory.mkdir()
        if config is not None:
            (directory / "ftp.toml").write_text(config)
            args = ["--config", str(directory / "ftp.toml"), *args]
        cluster = Cluster(directory, args, workers)
        started.append(cluster)
        if wait:
            cluster.wait_listening()
        return cluster

    yield start
    for cluster in started:
        cluster.kill()
    for cluster in started:
        log = cluster.log_path.read_text(errors="replace")
        assert_no_secret(log, configured_secrets(cluster.args), str(cluster.log_path))


def configured_secrets(args: Sequence[str]) -> set[str]:
    """The passwords and hashes a cluster was started with (config file and flags)."""
    secrets: set[str] = set()
    for flag, value in itertools.pairwise(args):
        if flag == "--config":
            users = tomllib.loads(Path(value).read_text()).get("users", [])
            secrets |= {
                u[key] for u in users for key in ("password", "password_hash") if u.get(key)
            }
        elif flag == "--user":
            secrets.add(value.partition(":")[2])
    return {secret for secret in secrets if secret}
