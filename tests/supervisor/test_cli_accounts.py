"""``ftp-cluster users ...`` against a real PostgreSQL: every verb, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.supervisor.harness import cli


def users(url: str, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    done = cli("users", *args, "--database", url, stdin=stdin)
    return done.returncode, done.stdout, done.stderr


def test_init_db_is_idempotent(postgres_url: str) -> None:
    code, out, _ = users(postgres_url, "init-db")
    assert code == 0 and "0001_ftp_users.sql, 0002_quotas.sql" in out
    code, out, _ = users(postgres_url, "init-db")
    assert code == 0 and "none (up to date)" in out


def test_every_verb_and_no_hash_is_ever_printed(postgres_url: str, tmp_path: Path) -> None:
    users(postgres_url, "init-db")
    code, out, err = users(postgres_url, "add", "ann", "--password-stdin", "--home", "/www",
                           "--permission", "/:ro", "--permission", "/www:rw",
                           "--max-connections", "4", "--read-limit", "1000",
                           "--quota-bytes", "5000",
                           stdin="Cli-Secret-9876\n")  # fmt: skip
    assert code == 0, err
    code, out, _ = users(postgres_url, "show", "ann", "--json")
    shown = json.loads(out)
    assert shown["password"] == "set" and shown["home_path"] == "/www"
    assert shown["permissions"] == [
        {"path": "/", "readable": True, "writable": False},
        {"path": "/www", "readable": True, "writable": True},
    ]
    assert shown["maximum_connections"] == 4 and shown["read_speed_limit"] == 1000
    assert shown["quota_bytes"] == 5000 and shown["quota_files"] is None
    assert "scrypt" not in out and "Cli-Secret" not in out

    # --config FILE works as well as --database URL.
    config = tmp_path / "ftp.toml"
    config.write_text(f'[accounts]\ndatabase = "{postgres_url}"\n')
    done = cli(
        "users", "set", "ann", "--any-password", "--write-limit", "0", "--config", str(config)
    )
    assert done.returncode == 0, done.stderr
    code, out, _ = users(postgres_url, "show", "ann")
    assert "password: any" in out and "permissions: /:ro, /www:rw" in out

    assert users(postgres_url, "disable", "ann")[0] == 0
    assert json.loads(users(postgres_url, "list", "--json")[1])[0]["disabled"] is True
    assert users(postgres_url, "enable", "ann")[0] == 0
    assert "ann\tenabled" in users(postgres_url, "list")[1]
    assert users(postgres_url, "delete", "ann")[0] == 0
    assert json.loads(users(postgres_url, "list", "--json")[1]) == []


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("show", "ghost"), 1, "unknown user 'ghost'"),
        (("delete", "ghost"), 1, "unknown user 'ghost'"),
        (("disable", "ghost"), 1, "unknown user 'ghost'"),
        (("set", "ghost", "--home", "/x"), 1, "unknown user 'ghost'"),
        (("add", "x", "--permission", "/a:rx"), 2, "bad permission '/a:rx'"),
        (("add", "x", "--permission", "a:rw"), 2, "bad permission 'a:rw'"),
        (("add", "x", "--max-connections", "-1"), 2, "--max-connections: must be at least 0"),
        (("add", "x", "--home", "rel"), 2, "home_path: must be an absolute"),
        (("add", "x", "--quota-files", "-3"), 2, "--quota-files: must be at least 0"),
        (("add", "x", "--password-hash", "plain"), 2, "not a hash of a supported format"),
        (("add", "two words"), 2, "login: must be a non-empty word"),
        (("set", "x"), 2, "nothing to change"),
    ],
)
def test_errors_are_clear_and_exit_non_zero(
    postgres_url: str, args: tuple[str, ...], code: int, words: str
) -> None:
    users(postgres_url, "init-db")
    got, out, err = users(postgres_url, *args)
    assert (got, out) == (code, ""), err
    assert words in err


def test_an_existing_login_is_not_added_twice(postgres_url: str) -> None:
    users(postgres_url, "init-db")
    assert users(postgres_url, "add", "dup")[0] == 0
    code, _, err = users(postgres_url, "add", "dup")
    assert code == 1 and "exists already" in err


def test_unreachable_database_and_missing_table(postgres_url: str) -> None:
    code, _, err = users("postgresql://ftp:Db-Url-Secret@127.0.0.1:1/ftp", "list")
    assert code == 1 and "cannot reach the users database 127.0.0.1:1/ftp" in err
    assert "Db-Url-Secret" not in err
    code, _, err = users(postgres_url, "list")  # init-db not run
    assert code == 1 and "run `ftp-cluster users init-db` first" in err
    done = cli("users", "list")
    assert done.returncode == 2 and "--config FILE" in done.stderr
