"""Merging the rounds of scenarios 3-5: the median round per figure, failures passed on."""

from __future__ import annotations

from bench.scenarios.crowd import merge_login_rounds, merge_transfer_rounds


def _transfer(seconds: float, *, complete: bool = True) -> dict[str, object]:
    return {"seconds": seconds, "ok": 300, "complete": complete, "mb_s_aggregate": 1 / seconds}


def test_transfer_rounds_keep_the_median_round_and_every_time() -> None:
    merged = merge_transfer_rounds([_transfer(3.0), _transfer(1.0), _transfer(2.0, complete=False)])
    assert merged["seconds"] == 2.0 and merged["mb_s_aggregate"] == 0.5
    assert merged["runs_s"] == [3.0, 1.0, 2.0]
    assert merged["complete"] is False  # one incomplete round taints the figure
    assert "runs spread from 1.00 to 3.00 s" in merged["warning"]


def test_login_rounds_take_each_kinds_median_on_its_own() -> None:
    rounds = [
        {"clients": 3, "concurrent_s": c, "concurrent_ok": 3, "concurrent_failures": f,
         "sequential_s": s, "sequential_ok": 3, "sequential_failures": {}}
        for c, s, f in ((1.0, 9.0, {}), (3.0, 7.0, {"timeout": 1}), (2.0, 8.0, {}))
    ]  # fmt: skip
    merged = merge_login_rounds(rounds)
    assert merged["concurrent_s"] == 2.0 and merged["concurrent_failures"] == {}
    assert merged["sequential_s"] == 8.0
    assert merged["concurrent_runs_s"] == [1.0, 3.0, 2.0]
    assert merged["sequential_runs_s"] == [9.0, 7.0, 8.0]


def test_a_failed_or_skipped_round_is_the_result() -> None:
    failed = {"error": "ConnectionRefusedError: ...", "log": "logs/x.log"}
    assert merge_transfer_rounds([_transfer(1.0), failed]) is failed
    assert merge_login_rounds([{"skipped": "not installed"}])["skipped"] == "not installed"
