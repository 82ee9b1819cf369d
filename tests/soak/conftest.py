"""The soak test gets the time it asks for, beyond the suite's per-test timeout."""

from __future__ import annotations

import pytest

from tests.supervisor.conftest import start_cluster

__all__ = ["start_cluster"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    minutes = float(config.getoption("--soak-minutes"))
    for item in items:
        if minutes > 0 and item.path.parent.name == "soak":
            item.add_marker(pytest.mark.timeout(minutes * 60 + 300))
