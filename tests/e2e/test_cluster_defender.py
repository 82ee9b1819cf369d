"""The brute-force defender of real clusters: bans shared through Redis, the CLI, fail2ban.

Real supervisors with real workers, a real redis-server, ftplib clients from
127.0.0.1 (the good client) and 127.0.0.2 (the one guessing passwords).
"""

from __future__ import annotations

import ftplib
import functools
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.e2e.cluster import (
    CLIENT_TIMEOUT,
    attempt,
    close_all,
    config_toml,
    start_with_redis,
    try_login,
    usable,
)
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, cli, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_orphans")]

GOOD = "127.0.0.1"
BAD = "127.0.0.2"
PASSWORD = "Defender-Pw-5813-correct"
WRONG = "Defender-Guess-0000"
CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "fail2ban"


def _config(namespace: str, **defender: object) -> str:
    table = {
        "enabled": True,
        "threshold": 15,
        "score_bad_password": 1,
        "ban_time": 60,
        "ban_time_increment": 0.5,
        "login_delay": 0.05,
        **defender,
    }
    text = config_toml(
        {"idle_timeout": 60},
        {"namespace": namespace},
        users=[{"login": "alice", "password": PASSWORD, "home_path": "/"}],
    )
    lines = [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    return text + "[defender]\n" + "\n".join(lines) + "\n"


def _session(cluster: Cluster, source: str) -> ftplib.FTP:
    ftp = attempt(cluster, source)
    assert isinstance(ftp, ftplib.FTP), ftp
    assert try_login(ftp, "alice", PASSWORD).startswith("230")
    return ftp


def _guess(cluster: Cluster, source: str = BAD) -> str:
    """One wrong password from ``source``: the reply (530, or 421 once banned)."""
    ftp = attempt(cluster, source)
    if isinstance(ftp, str):
        return ftp
    try:
        return ftp.login("alice", WRONG)
    except ftplib.Error as reply:
        return str(reply)
    except (OSError, EOFError) as exc:
        return f"closed: {exc!r}"
    finally:
        ftp.close()


def _closed_at(ftp: ftplib.FTP, times: list[float], lock: threading.Lock) -> threading.Thread:
    """A thread that waits for the server's 421 (or EOF) on ``ftp``, noting when."""

    def wait() -> None:
        assert ftp.sock is not None
        ftp.sock.settimeout(CLIENT_TIMEOUT)
        try:
            line = ftp.file.readline() if ftp.file is not None else b""
        except OSError:
            line = ""
        with lock:
            times.append(time.monotonic() if not line or str(line).startswith("421") else -1.0)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def _bans(cluster: Cluster) -> list[dict[str, object]]:
    """``bans list --json`` of a running cluster, found by its pid file."""
    done = cli("bans", "list", "--json", "--pid-file", str(cluster.pid_file))
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def test_guessing_ip_is_banned_on_every_worker_and_host(
    start_cluster: StartCluster, redis_server: RedisServer, redis_namespace: str
) -> None:
    config = _config(redis_namespace)
    one = start_with_redis(start_cluster, redis_server.url, 4, config)
    two = start_with_redis(start_cluster, redis_server.url, 2, config)
    # What an operator's --config gives the CLI: the external Redis and [defender].
    config_file = Path(one.args[1]).with_name("cli.toml")
    config_file.write_text(
        config.replace("[redis]\n", f"[redis]\nurl = {json.dumps(redis_server.url)}\n")
    )
    good = [_session(one, GOOD), _session(two, GOOD)]
    held = [_session(one, BAD) for _ in range(8)] + [_session(two, BAD) for _ in range(3)]
    try:
        replies = [_guess(one) for _ in range(14)]
        assert all(reply.startswith("530") for reply in replies), replies
        closed: list[float] = []
        lock = threading.Lock()
        readers = [_closed_at(ftp, closed, lock) for ftp in held]
        started = time.monotonic()
        # The fifteenth guess reaches the threshold: its own session is closed too.
        assert _guess(one).startswith(("421", "closed")), "the banning attempt is not answered"
        replies = [_guess(one) for _ in range(5)]  # guesses 16-20 are refused at connect
        assert all("banned" in reply for reply in replies), replies
        for reader in readers:
            reader.join(CLIENT_TIMEOUT)
        assert len(closed) == len(held) and min(closed) > 0, closed
        slowest = max(closed) - started
        assert slowest < 1.0, f"open sessions closed after {slowest:.2f} s"

        # Refused at connect by every worker of the first cluster and by the second cluster.
        refusals = [attempt(one, BAD) for _ in range(40)]
        assert all(isinstance(r, str) and r.startswith("421") for r in refusals), refusals

        # These 40 refusals at connect (and most of guesses 16-20: a worker that had
        # not yet heard of the ban closes the session as the news arrives).
        def refused() -> dict[int, int] | None:
            counts = {int(w["pid"]): int(w["refused"]) for w in one.status()["workers"]}
            return counts if sum(counts.values()) >= 40 else None

        per_worker = wait_for(refused, timeout=5, interval=0.15)
        assert len(per_worker) == 4 and all(per_worker.values()), per_worker
        assert all("banned" in str(attempt(two, BAD)) for _ in range(10))

        # The good client goes on: held sessions and new ones, on both clusters.
        assert all(usable(ftp) for ftp in good)
        close_all([_session(one, GOOD), _session(two, GOOD)])

        banned = f"defender: banned ip={BAD} offender={BAD} seconds=60 ban=1"
        wait_for(lambda: banned in one.log(), timeout=2)
        log = one.log()
        assert log.count(f"defender: login failed ip={BAD} reason=bad_password") >= 15
        [ban] = _bans(one)
        assert ban["ip"] == BAD and ban["ban"] == 1

        _remove_then_ban_again(one, two, config_file)
    finally:
        close_all(good + held)


def _remove_then_ban_again(one: Cluster, two: Cluster, config_file: Path) -> None:
    """``bans remove`` lifts the ban everywhere at once; ``bans add`` escalates."""
    done = cli("bans", "remove", BAD, "--config", str(config_file))
    assert done.returncode == 0, done.stderr
    for cluster in (one, two):
        close_all([wait_for(functools.partial(_admitted, cluster), timeout=1.0)])
    assert _bans(one) == []

    # remove forgot the escalation: an added ban is the first again; once it
    # ran out, the ban the next fifteen guesses earn is the second, 50 % longer.
    done = cli("bans", "add", BAD, "--for", "1", "--config", str(config_file))
    assert done.returncode == 0 and "for 1 s (ban 1 today)" in done.stdout, done
    wait_for(lambda: "banned" in str(attempt(two, BAD)), timeout=1.0)
    close_all([wait_for(functools.partial(_admitted, one), timeout=3.0)])
    replies = [_guess(one) for _ in range(15)]
    assert all(r.startswith("530") for r in replies[:14]), replies
    [ban] = _bans(one)
    assert ban["ban"] == 2
    assert 85 < float(str(ban["seconds_left"])) <= 90  # 60 s * 1.5
    done = cli("bans", "add", BAD, "--for", "30", "--config", str(config_file))
    assert "banned 127.0.0.2 for 30 s (ban 3 today)" in done.stdout, done
    banned = f"defender: banned ip={BAD} offender={BAD} seconds=90 ban=2"
    wait_for(lambda: banned in one.log(), timeout=2)


def _admitted(cluster: Cluster) -> ftplib.FTP | None:
    result = attempt(cluster, BAD)
    return result if isinstance(result, ftplib.FTP) else None


def test_escalated_second_ban(
    start_cluster: StartCluster, redis_server: RedisServer, redis_namespace: str
) -> None:
    # Bans of 4 s, then 6 s: long enough that `bans list`, a subprocess that
    # takes a second to start on a loaded machine, still finds the ban.
    config = _config(redis_namespace, threshold=3, ban_time=4)
    cluster = start_with_redis(start_cluster, redis_server.url, 2, config)
    for number, seconds in ((1, 4), (2, 6)):  # 4 s, then 50 % longer
        replies = [_guess(cluster) for _ in range(3)]
        assert all(r.startswith("530") for r in replies[:2]), replies
        assert "banned" in _guess(cluster)
        line = f"defender: banned ip={BAD} offender={BAD} seconds={seconds} ban={number}"
        wait_for(lambda line=line: line in cluster.log(), timeout=2)  # type: ignore[misc]
        [ban] = _bans(cluster)
        assert ban["ban"] == number
        assert 0 < float(str(ban["seconds_left"])) <= seconds
        wait_for(lambda: _bans(cluster) == [], timeout=seconds + 3)
        close_all([wait_for(lambda: _admitted(cluster), timeout=2)])


def test_safelisted_ip_is_never_banned(
    start_cluster: StartCluster, redis_server: RedisServer, redis_namespace: str
) -> None:
    config = _config(redis_namespace, threshold=3, safelist=[f"{BAD}/32"], login_delay=0)
    cluster = start_with_redis(start_cluster, redis_server.url, 2, config)
    replies = [_guess(cluster) for _ in range(20)]
    assert all(r.startswith("530") for r in replies), replies
    assert "defender: banned" not in cluster.log()
    done = cli("bans", "add", BAD, "--pid-file", str(cluster.pid_file))
    assert done.returncode == 2 and "safelisted" in done.stderr


#: A login name that tries to forge a match for another address (it must not).
FORGED = (
    "x [1] ftp_cluster.worker: defender: login failed ip=10.9.9.9 reason=x "
    '", "message": "defender: banned ip=10.9.9.9 offender=x'
)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_fail2ban_filter_matches_the_server_log(
    start_cluster: StartCluster, redis_server: RedisServer, redis_namespace: str, log_format: str
) -> None:
    regex = shutil.which("fail2ban-regex")
    if regex is None:
        pytest.fail("fail2ban-regex is missing: install the Debian package fail2ban")
    config = _config(redis_namespace, threshold=4, login_delay=0)
    config += f'[logging]\nformat = "{log_format}"\n'
    cluster = start_with_redis(start_cluster, redis_server.url, 2, config)
    replies = [_guess(cluster, BAD) for _ in range(5)] + [_guess(cluster, GOOD)]
    assert "banned" in replies[4]
    forger = attempt(cluster, GOOD)
    assert isinstance(forger, ftplib.FTP)
    assert try_login(forger, FORGED, WRONG).startswith("530")
    forger.close()
    close_all([_session(cluster, GOOD)])  # a good login: must not match
    log = cluster.log_path
    wait_for(lambda: log.read_text().count(f"ip={GOOD} reason=") == 2, timeout=5)
    done = subprocess.run(
        [regex, "-o", "ip", str(log), str(CONTRIB / "filter.d" / "ftp-cluster.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = done.stdout.split()
    # Four failed logins and the ban of 127.0.0.2; two failed logins of 127.0.0.1.
    assert sorted(found) == [GOOD] * 2 + [BAD] * 5, done.stdout


def test_connection_limit_refusals_score(
    start_cluster: StartCluster, redis_server: RedisServer, redis_namespace: str
) -> None:
    # Per-IP cap 1, threshold 6, 3 per refusal: the second 421 bans.
    config = _config(redis_namespace, threshold=6, login_delay=0)
    config = config.replace("[server]\n", "[server]\nmaximum_connections_per_ip = 1\n")
    cluster = start_with_redis(start_cluster, redis_server.url, 2, config)
    held = _session(cluster, BAD)
    try:
        first, second = attempt(cluster, BAD), attempt(cluster, BAD)
        assert isinstance(first, str) and "too many connections" in first, first
        assert isinstance(second, str) and second.startswith("421"), second
        wait_for(lambda: not usable(held), timeout=1.0)  # the held session is closed
        assert "banned" in str(attempt(cluster, BAD))
        banned = f"defender: banned ip={BAD} offender={BAD} seconds=60 ban=1"
        wait_for(lambda: banned in cluster.log(), timeout=2)
        assert cluster.log().count(f"defender: limit exceeded ip={BAD} reason=limit_exceeded") == 2
        close_all([_session(cluster, GOOD)])
    finally:
        held.close()


def test_redis_outage_scores_per_worker_then_cluster_wide_again(
    start_cluster: StartCluster, redis_factory: Callable[[], RedisServer], redis_namespace: str
) -> None:
    redis = redis_factory()
    config = _config(redis_namespace, threshold=3, login_delay=0)
    config = config.replace("[redis]\n", '[redis]\non_failure = "open"\n')
    cluster = start_with_redis(start_cluster, redis.url, 2, config)
    workers = cluster.worker_pids()
    redis.stop()
    # Each worker scores its own share of the guesses and bans by itself.
    # Guesses land on the workers as SO_REUSEPORT hashes them: go on (at most 60)
    # until both have banned.
    replies = []
    for _ in range(60):
        replies.append(_guess(cluster))
        if cluster.log().count(f"defender: banned ip={BAD}") == 2:
            break
    assert cluster.log().count(f"defender: banned ip={BAD}") == 2, replies
    assert all("banned" in str(attempt(cluster, BAD)) for _ in range(10)), replies
    assert "is unreachable" in cluster.log()
    close_all([_session(cluster, GOOD)])
    assert cluster.worker_pids() == workers, "a worker died in the outage"
    # Back: a ban decided by one worker holds on both again.
    redis.start()
    wait_for(lambda: cluster.log().count("is reachable again") == 2, timeout=10)
    other = "127.0.0.3"
    # Three guesses in all, wherever they land, ban it: the score is cluster-wide again.
    replies = [_guess(cluster, other) for _ in range(3)]
    assert all(r.startswith("530") for r in replies[:2]), replies
    wait_for(lambda: f"defender: banned ip={other}" in cluster.log(), timeout=2)
    assert all("banned" in str(attempt(cluster, other)) for _ in range(10))
