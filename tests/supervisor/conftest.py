"""Fixtures for the supervisor tests: real ``ftp-cluster`` processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.supervisor.harness import Cluster

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
