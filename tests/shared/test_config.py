"""The TOML loader: the issue's example loads; every kind of mistake is located."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from ftp_cluster.shared.config import ConfigError, apply_overrides, load_config
from ftp_cluster.shared.passwords import hash_password
from ftp_cluster.shared.settings import ClusterConfig
from ftp_cluster.shared.users import User

EXAMPLE = """\
[server]
host = "127.0.0.1"
port = 2121
workers = 4
root = "srv"                           # relative to this file
passive_ports = [50000, 50100]
masquerade_address = "203.0.113.5"
maximum_connections = 1000
maximum_connections_per_ip = 20
read_speed_limit = 0
write_speed_limit = 0
read_speed_limit_per_connection = 0
write_speed_limit_per_connection = 0
socket_timeout = 30
path_timeout = 10
idle_timeout = 300
wait_future_timeout = 5
graceful_timeout = 30
worker_timeout = 30

[redis]
url = "redis://127.0.0.1:6379/0"
namespace = "ftp-cluster"
on_failure = "closed"
lease_ttl = 15

[[users]]
login = "alice"
password = "plain-text"
home_path = "/alice"
maximum_connections = 3
read_speed_limit = 1048576
write_speed_limit = 1048576
read_speed_limit_per_connection = 0
write_speed_limit_per_connection = 0
permissions = [
  { path = "/", readable = false, writable = false },
  { path = "/alice", readable = true, writable = true },
]

[[users]]
home_path = "/pub"
permissions = [{ path = "/pub", readable = true, writable = false }]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "srv").mkdir(exist_ok=True)
    path = tmp_path / "ftp.toml"
    path.write_text(text)
    return path


def error_for(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    return caught.value


def test_issue_example_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, EXAMPLE))
    server = config.server
    assert (server.host, server.port, server.workers) == ("127.0.0.1", 2121, 4)
    assert server.root == (tmp_path / "srv").resolve()
    assert server.data_ports == range(50000, 50101)
    assert server.maximum_connections == 1000
    assert server.read_speed_limit is None  # 0 means unlimited
    assert server.socket_timeout == 30.0
    assert isinstance(server.socket_timeout, float)
    assert config.redis.url == "redis://127.0.0.1:6379/0"
    assert config.redis.lease_ttl == 15.0
    alice, anonymous = config.users
    assert alice.login == "alice" and alice.check_password("plain-text")
    assert alice.maximum_connections == 3
    assert alice.read_speed_limit_per_connection is None
    assert not alice.permission_for(PurePosixPath("/bob")).readable
    assert alice.permission_for(PurePosixPath("/alice/x")).writable
    assert anonymous.is_anonymous
    assert anonymous.home_path == PurePosixPath("/pub")
    assert config.source == tmp_path / "ftp.toml"


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.server.port == ClusterConfig().server.port
    assert config.redis == ClusterConfig().redis
    assert config.users == ()


def test_password_hash_is_accepted(tmp_path: Path) -> None:
    encoded = hash_password("secret", log2_n=4)
    config = load_config(
        write(tmp_path, f'[[users]]\nlogin = "bob"\npassword_hash = "{encoded}"\n')
    )
    assert config.users[0].check_password("secret")
    assert not config.users[0].check_password("wrong")


@pytest.mark.parametrize(
    ("text", "key", "line", "words"),
    [
        ("[server]\nport = 70000\n", "server.port", 2, "between 0 and 65535"),
        ("[server]\nhost = 'x'\n\nwrokers = 2\n", "server.wrokers", 4, "unknown key"),
        ("[server]\nworkers = '4'\n", "server.workers", 2, "integer"),
        ("[server]\nworkers = 0\n", "server.workers", 2, "between 1"),
        ("[server]\nidle_timeout = true\n", "server.idle_timeout", 2, "number"),
        ("[server]\nroot = 'missing'\n", "server.root", 2, "does not exist"),
        ("[server]\nroot = 'ftp.toml'\n", "server.root", 2, "not a directory"),
        ("[server]\npassive_ports = [50100, 50000]\n", "server.passive_ports", 2, "exceed"),
        ("[server]\npassive_ports = [1, 2, 3]\n", "server.passive_ports", 2, "list of 2"),
        ("[server]\nmaximum_connections = -1\n", "server.maximum_connections", 2, "at least 0"),
        ("[server]\nread_speed_limit = -5\n", "server.read_speed_limit", 2, "at least 0"),
        ("[server]\nmasquerade_address = 'example'\n", "server.masquerade_address", 2, "IPv4"),
        ('[server]\nwelcome_message = "a\\nb"\n', "server.welcome_message", 2, "single line"),
        ("[redis]\non_failure = 'maybe'\n", "redis.on_failure", 2, "'closed', 'open'"),
        ("[redis]\nurl = 'http://x'\n", "redis.url", 2, "redis://"),
        ("[redis]\nurl = 'redis://h:port/0'\n", "redis.url", 2, "not a valid Redis URL"),
        ("[redis]\nurl = 'redis+sentinel://h:1'\n", "redis.url", 2, "service_name"),
        ("[redis]\nlease_ttl = 0\n", "redis.lease_ttl", 2, "at least 1"),
        ("[server]\n[serve]\nport = 1\n", "serve", 2, "unknown table"),
        ("server = 3\n", "server", 1, "must be a table"),
    ],
)
def test_server_and_redis_errors_name_key_file_and_line(
    tmp_path: Path, *, text: str, key: str, line: int, words: str
) -> None:
    error = error_for(tmp_path, text)
    assert error.key == key
    assert error.line == line
    assert words in error.reason
    assert f"line {line}" in str(error) and key in str(error)


USERS = """\
[server]
port = 21

[[users]]
login = "alice"
password = "a"

[[users]]
login = "bob"
password = "b"
permissions = [
  { path = "/", readable = true },
  { path = "/x", writable = "yes" },
]
"""


@pytest.mark.parametrize(
    ("old", "new", "key", "line", "words"),
    [
        ('login = "bob"', 'login = "alice"', "users[1].login", 9, "duplicate login"),
        ('login = "bob"', 'logn = "bob"', "users[1].logn", 9, "unknown key"),
        ('password = "b"', "maximum_connections = -2", "users[1].maximum_connections", 10, ""),
        ('password = "b"', 'home_path = "relative"', "users[1].home_path", 10, "absolute"),
        ('password = "b"', 'password_hash = "md5$x"', "users[1].password_hash", 10, "hash"),
        ('password = "b"', 'base_path = "nowhere"', "users[1].base_path", 10, "does not exist"),
        ('writable = "yes"', "writable = false", "", 0, ""),  # control: this one is fine
    ],
)
def test_user_errors_name_key_file_and_line(
    tmp_path: Path, *, old: str, new: str, key: str, line: int, words: str
) -> None:
    text = USERS.replace(old, new)
    if not key:
        text = text.replace('{ path = "/x", writable = "yes" }', '{ path = "/x" }')
        assert len(load_config(write(tmp_path, text)).users) == 2
        return
    text = text.replace('writable = "yes"', "writable = true")
    error = error_for(tmp_path, text)
    assert (error.key, error.line) == (key, line)
    assert words in error.reason


def test_permission_entry_errors_point_at_the_entry(tmp_path: Path) -> None:
    error = error_for(tmp_path, USERS)
    assert error.key == "users[1].permissions[1]"
    assert error.line == 13
    assert "true or false" in error.reason
    error = error_for(tmp_path, USERS.replace('{ path = "/", readable', '{ pth = "/", readable'))
    assert (error.key, error.line) == ("users[1].permissions[0]", 12)
    assert "unknown key 'pth'" in error.reason


def test_permissions_as_array_of_tables_are_located(tmp_path: Path) -> None:
    text = (
        '[[users]]\nlogin = "a"\n\n[[users.permissions]]\npath = "/"\n\n'
        '[[users.permissions]]\npath = "rel"\n'
    )
    error = error_for(tmp_path, text)
    assert (error.key, error.line) == ("users[0].permissions[1]", 7)


def test_two_anonymous_users_are_refused(tmp_path: Path) -> None:
    error = error_for(tmp_path, '[[users]]\nhome_path = "/a"\n\n[[users]]\nhome_path = "/b"\n')
    assert error.key == "users[1].login"
    assert error.line == 4
    assert "anonymous" in error.reason


def test_password_and_hash_together_are_refused(tmp_path: Path) -> None:
    encoded = hash_password("x", log2_n=4)
    error = error_for(
        tmp_path, f'[[users]]\nlogin = "a"\npassword = "x"\npassword_hash = "{encoded}"\n'
    )
    assert "not both" in error.reason


def test_toml_syntax_error_names_file_and_position(tmp_path: Path) -> None:
    error = error_for(tmp_path, "[server\nport = 1\n")
    assert "invalid TOML" in str(error) and "line 1" in str(error)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_overrides_replace_and_are_checked(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, EXAMPLE))
    changed = apply_overrides(
        config, {"server.port": 0, "server.workers": 2, "redis.url": None, "server.root": tmp_path}
    )
    assert (changed.server.port, changed.server.workers) == (0, 2)
    assert changed.redis.url == config.redis.url  # None: not given
    assert changed.server.root == tmp_path.resolve()
    assert changed.users == config.users
    with pytest.raises(ConfigError, match="command line") as caught:
        apply_overrides(config, {"server.port": 99999})
    assert caught.value.key == "server.port"
    with pytest.raises(ConfigError, match="unknown setting"):
        apply_overrides(config, {"server.nope": 1})


# ------------------------------------------------ rules from the definitions

LIMITS = [
    "maximum_connections",
    "read_speed_limit",
    "write_speed_limit",
    "read_speed_limit_per_connection",
    "write_speed_limit_per_connection",
]


@pytest.mark.parametrize("name", LIMITS)
def test_a_limit_of_0_means_unlimited_for_the_server_and_for_users(
    tmp_path: Path, name: str
) -> None:
    text = f'[server]\n{name} = 0\n\n[[users]]\nlogin = "a"\n{name} = 0\n\n'
    text += f'[[users]]\nlogin = "b"\n{name} = 7\n'
    config = load_config(write(tmp_path, text))
    assert getattr(config.server, name) is None
    assert getattr(config.users[0], name) is None
    assert getattr(config.users[1], name) == 7


@pytest.mark.parametrize("name", LIMITS)
def test_a_negative_user_limit_is_refused_with_key_file_and_line(tmp_path: Path, name: str) -> None:
    error = error_for(tmp_path, f'[[users]]\nlogin = "a"\n\n[[users]]\nlogin = "b"\n{name} = -1\n')
    assert (error.key, error.line) == (f"users[1].{name}", 6)
    assert error.reason == "must be at least 0, got -1"
    assert f"line 6: users[1].{name}: must be at least 0" in str(error)


def test_a_server_only_limit_is_no_user_key(tmp_path: Path) -> None:
    error = error_for(tmp_path, '[[users]]\nlogin = "a"\nmaximum_connections_per_ip = 2\n')
    assert (error.key, error.line) == ("users[0].maximum_connections_per_ip", 3)
    assert "unknown key" in error.reason
    # The keys listed are the User definition's settings, limits included.
    for key in ("login", "password_hash", "home_path", "permissions", *LIMITS):
        assert key in error.reason
    assert "_ordered" not in error.reason


@pytest.mark.parametrize(
    ("line", "value"),
    [("idle_timeout = 0", None), ("socket_timeout = 0", None), ("path_timeout = 2", 2.0)],
)
def test_a_timeout_of_0_means_none(tmp_path: Path, line: str, value: float | None) -> None:
    server = load_config(write(tmp_path, f"[server]\n{line}\n")).server
    assert getattr(server, line.split(maxsplit=1)[0]) == value


def test_a_negative_timeout_is_refused(tmp_path: Path) -> None:
    error = error_for(tmp_path, "[server]\n\nidle_timeout = -1\n")
    assert (error.key, error.line, error.reason) == (
        "server.idle_timeout",
        3,
        "must be at least 0, got -1.0",
    )


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('[[users]]\nlogin = "a"\npassword = 12345678\n', "12345678"),
        ('[[users]]\nlogin = "a"\npassword = ["hunter2"]\n', "hunter2"),
        ('[[users]]\nlogin = "a"\npassword_hash = "scrypt$1$x$hunter2"\n', "hunter2"),
        ('[[users]]\nlogin = "a"\npassword_hash = 31337\n', "31337"),
    ],
)
def test_errors_about_secrets_do_not_show_them(tmp_path: Path, text: str, secret: str) -> None:
    error = error_for(tmp_path, text)
    assert error.line == 3
    assert error.key is not None and error.key in str(error)
    assert secret not in str(error)


def test_a_permission_error_names_the_entry_key(tmp_path: Path) -> None:
    error = error_for(tmp_path, '[[users]]\npermissions = [{ path = "/", readable = 1 }]\n')
    assert error.key == "users[0].permissions[0]"
    assert error.reason == "readable: must be true or false, got 1"


def test_overrides_use_the_same_rules(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert (
        apply_overrides(config, {"server.maximum_connections": 0}).server.maximum_connections
        is None
    )
    for dotted, value, words in [
        ("server.workers", 0, "between 1 and 1024"),
        ("server.root", tmp_path / "absent", "does not exist"),
        ("server.host", "two words", "without spaces"),
        ("redis.url", "http://user:pw@x", "redis://"),
    ]:
        with pytest.raises(ConfigError, match=words) as caught:
            apply_overrides(config, {dotted: value})
        assert caught.value.key == dotted
    with pytest.raises(ConfigError) as caught:
        apply_overrides(config, {"redis.url": "http://user:pw@x"})
    assert ":pw@" not in str(caught.value)  # URLs are shown without their password


def test_override_users_join_and_replace_the_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(write(tmp_path, USERS.replace('writable = "yes"', "writable = true")))
    alice = User("alice", "new")
    carol = User("carol", "c")
    changed = apply_overrides(config, {"users": (alice, carol)})
    assert [u.login for u in changed.users] == ["bob", "alice", "carol"]
    assert changed.users[1] is alice
    assert "login 'alice' is given in the config file and on the command line" in caplog.text
    assert "'carol'" not in caplog.text and "new" not in caplog.text
    with pytest.raises(ConfigError, match="given twice"):
        apply_overrides(config, {"users": (carol, User("carol", "other"))})
