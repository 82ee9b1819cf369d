"""``ftp-cluster start --user LOGIN:PASSWORD``: parsing, and real clusters that use it."""

from __future__ import annotations

import ftplib
import io
from pathlib import Path, PurePosixPath

import pytest

from ftp_cluster.shared.config import ConfigError
from ftp_cluster.supervisor.cli import parse_user
from tests.supervisor.conftest import StartCluster
from tests.supervisor.harness import Cluster, cli, wait_for

# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("text", "login", "password"),
    [
        ("alice:s3cret", "alice", "s3cret"),
        ("bob:pw:with:colons", "bob", "pw:with:colons"),
        ("carol:", "carol", ""),
        ("dave::", "dave", ":"),
        ("émile:mot de passe", "émile", "mot de passe"),
    ],
)
def test_split_at_the_first_colon(text: str, login: str, password: str) -> None:
    user = parse_user(text)
    assert (user.login, user.password) == (login, password)
    assert user.check_password(password)
    assert not user.check_password(password + "x")


def test_the_account_reads_and_writes_everything_from_its_root() -> None:
    user = parse_user("alice:pw")
    assert user.home_path == PurePosixPath("/")
    assert user.base_path is None  # the server's root
    for path in ("/", "/a/b"):
        permission = user.permission_for(PurePosixPath(path))
        assert permission.readable and permission.writable
    assert user.maximum_connections is None and user.password_hash is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("no-colon-secret", "no ':'"),
        (":secret", "login must be a non-empty word"),
        ("two words:secret", "login must be a non-empty word"),
        ("", "no ':'"),
    ],
)
def test_malformed_values_are_config_errors_without_the_password(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_user(text)
    assert caught.value.key == "--user"
    assert words in str(caught.value)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("value", ["alice", ":pw"])
def test_malformed_flag_stops_start_with_status_2(tmp_path: Path, value: str) -> None:
    done = cli("start", "--user", value, "--port", "0", "--pid-file", str(tmp_path / "p.pid"))
    assert done.returncode == 2
    assert "config error: command line: --user:" in done.stderr
    assert done.stdout == ""


def test_the_same_login_twice_is_refused(tmp_path: Path) -> None:
    args = ("--user", "alice:a", "--user", "alice:b", "--pid-file", str(tmp_path / "p.pid"))
    done = cli("start", "--port", "0", *args)
    assert done.returncode == 2
    assert "login 'alice' given twice" in done.stderr


# ----------------------------------------------------------------- clusters


def login(cluster: Cluster, user: str, password: str) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=10)
    ftp.connect(cluster.host, cluster.port)
    try:
        ftp.login(user, password)
    except BaseException:
        ftp.close()
        raise
    return ftp


def refused(cluster: Cluster, user: str, password: str) -> bool:
    try:
        login(cluster, user, password).quit()
    except ftplib.error_perm as exc:
        return str(exc).startswith("530")
    return False


def test_users_from_flags_log_in_and_no_anonymous_one_exists(start_cluster: StartCluster) -> None:
    cluster = start_cluster(
        args=["--user", "alice:s3cret", "--user", "bob:pw:with:colons"], workers=2
    )

    def check() -> None:
        for user, password in (("alice", "s3cret"), ("bob", "pw:with:colons")):
            ftp = login(cluster, user, password)
            assert ftp.pwd() == "/"
            ftp.storbinary(f"STOR {user}.txt", io.BytesIO(user.encode()))
            assert user + ".txt" in ftp.nlst()
            ftp.quit()
            assert (cluster.root / f"{user}.txt").read_bytes() == user.encode()
        assert refused(cluster, "anonymous", "guest@example.com")
        assert refused(cluster, "alice", "pw:with:colons")
        assert refused(cluster, "bob", "pw")  # not split again at the second ':'

    check()
    # A reload re-reads the (absent) config file: the flags' users stay.
    assert cli("reload", "--pid-file", str(cluster.pid_file)).returncode == 0
    wait_for(
        lambda: (
            {w["generation"] for w in cluster.status()["workers"] if w["state"] == "accepting"}
            == {1}
        ),
        timeout=15,
    )
    check()


def test_a_flag_replaces_the_files_user_of_that_login(start_cluster: StartCluster) -> None:
    config = (
        '[[users]]\nlogin = "alice"\npassword = "from-the-file"\n\n'
        '[[users]]\nlogin = "carol"\npassword = "carol-Pw-77"\n'
    )
    cluster = start_cluster(args=["--user", "alice:from-the-flag"], workers=1, config=config)
    login(cluster, "alice", "from-the-flag").quit()
    login(cluster, "carol", "carol-Pw-77").quit()  # the file's other users stay
    assert refused(cluster, "alice", "from-the-file")
    assert refused(cluster, "anonymous", "")
    log = cluster.log()
    assert "login 'alice' is given in the config file and on the command line" in log
    assert "from-the-flag" not in log and "from-the-file" not in log
