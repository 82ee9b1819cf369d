"""The ``[defender]`` table: what loads, and errors that name the key, the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftp_cluster.shared.config import load_config
from ftp_cluster.shared.limits.base import Offence
from ftp_cluster.shared.limits.defender import Policy
from ftp_cluster.shared.settings import DefenderSettings
from tests.shared.config_files import assert_error_points_at, write


def test_the_issue_example_loads(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "[defender]\nenabled = true\nthreshold = 15\nscore_bad_password = 1\n"
            "score_unknown_user = 2\nscore_limit_exceeded = 3\nobservation_time = 1800\n"
            'ban_time = 1800\nban_time_increment = 0.5\nsafelist = ["10.0.0.0/8"]\n'
            "login_delay = 1.0\nipv6_prefix = 64\n",
        )
    )
    defender = config.defender
    assert defender.enabled and defender.threshold == 15
    assert defender.safelist == ("10.0.0.0/8",)
    assert defender.observation_time == 1800.0 and defender.ban_time_increment == 0.5
    assert load_config(write(tmp_path, "")).defender == DefenderSettings()
    assert not DefenderSettings().enabled


CASES = [
    ('[defender]\nsafelist = ["10.0.0.0/8", "not-a-net"]\n', ("defender.safelist", 2, "CIDR")),
    ('[defender]\nsafelist = "10.0.0.0/8"\n', ("defender.safelist", 2, "must be a list")),
    ("[defender]\n\nthreshold = 0\n", ("defender.threshold", 3, "at least 1")),
    ("[defender]\nipv6_prefix = 129\n", ("defender.ipv6_prefix", 2, "between 1 and 128")),
    ("[defender]\nlogin_delay = -1\n", ("defender.login_delay", 2, "between 0 and 60")),
    ("[defender]\nban = 3\n", ("defender.ban", 2, "unknown key")),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_defender_errors_name_key_file_and_line(
    tmp_path: Path, body: str, expected: tuple[str, int, str]
) -> None:
    key, line, words = expected
    path = write(tmp_path, body)
    assert_error_points_at(path, key, line, words)


def test_policy_offenders_scores_and_escalation() -> None:
    policy = Policy(DefenderSettings(safelist=("10.0.0.0/8",), ipv6_prefix=48))
    assert policy.offender("192.0.2.7") == "192.0.2.7"
    assert policy.offender("::ffff:192.0.2.7") == "192.0.2.7"
    assert policy.offender("10.9.8.7") is None
    assert policy.offender("2001:db8:1:2::3") == "2001:db8:1::/48"
    assert policy.offender("fe80::1%eth0") == "fe80::/48"
    assert policy.offender("nonsense") is None
    assert policy.offender("2001:db8:1::/48") == "2001:db8:1::/48"  # as `bans list` shows it
    assert policy.score(Offence.UNKNOWN_USER) == 2
    assert [policy.ban_seconds(n) for n in (1, 2, 3)] == [1800.0, 2700.0, 4050.0]
