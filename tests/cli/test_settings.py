"""Each setting read from its flag and from the config file gives the same value; bad values
give one line naming the flag or the key."""

from __future__ import annotations

import os

import pytest

from smtpgate.cli.config import SETTINGS, UsageError, parse_settings
from smtpgate.cli.options import declared
from smtpgate.cli.settings import GROUPS, Settings

# name: (flag arguments, TOML line, the value both give, what else the check needs)
CASES: dict[str, tuple[list[str], str, object, list[str]]] = {
    "host": (["--host", "::1"], 'host = "::1"', "::1", []),
    "port": (["--port", "0"], "port = 0", 0, []),
    "listen": (
        ["--listen", "127.0.0.1:25", "--listen", "[::1]:26"],
        'listen = ["127.0.0.1:25", "[::1]:26"]',
        [("127.0.0.1", 25), ("::1", 26)],
        [],
    ),
    "name": (["--name", "mx.test"], 'name = "mx.test"', "mx.test", []),
    "lmtp": (["--lmtp"], "lmtp = true", True, []),
    "proxy_protocol": (["--proxy-protocol", "10.0.0.0/8"], 'proxy_protocol = ["10.0.0.0/8"]', ["10.0.0.0/8"], []),
    "workers": (["--workers", "3"], "workers = 3", 3, []),
    "tls_cert": (["--tls-cert", "/c.pem"], 'tls_cert = "/c.pem"', "/c.pem", ["--tls-key", "/k.pem"]),
    "tls_key": (["--tls-key", "/k.pem"], 'tls_key = "/k.pem"', "/k.pem", ["--tls-cert", "/c.pem"]),
    "tls_passphrase_file": (
        ["--tls-passphrase-file", "/p"],
        'tls_passphrase_file = "/p"',
        "/p",
        ["--tls-cert", "/c.pem", "--tls-key", "/k.pem"],
    ),
    "implicit_tls": (["--implicit-tls"], "implicit_tls = true", True, []),
    "require_tls": (["--require-tls"], "require_tls = true", True, []),
    "auth_file": (["--auth-file", "/users"], 'auth_file = "/users"', "/users", []),
    "auth_optional": (["--auth-optional"], "auth_optional = true", True, ["--auth-file", "/users"]),
    "allow_insecure_auth": (["--allow-insecure-auth"], "allow_insecure_auth = true", True, []),
    "max_size": (["--max-size", "2M"], 'max_size = "2M"', 2 * 1024 * 1024, []),
    "max_clients": (["--max-clients", "9"], "max_clients = 9", 9, []),
    "timeout": (["--timeout", "0.5"], "timeout = 0.5", 0.5, []),
    "close_timeout": (["--close-timeout", "3"], "close_timeout = 3", 3.0, []),
    "sink": (["--sink", "mbox:/m"], 'sink = "mbox:/m"', "mbox:/m", []),
    "http": (["--http", "8025"], 'http = "8025"', ("127.0.0.1", 8025), []),
    "http_auth_file": (["--http-auth-file", "/h"], 'http_auth_file = "/h"', "/h", ["--http", "1"]),
    "inbox_max_messages": (["--inbox-max-messages", "5"], "inbox_max_messages = 5", 5, []),
    "inbox_max_age": (["--inbox-max-age", "24h"], 'inbox_max_age = "24h"', 86400.0, []),
    "deliver": (["--deliver", "smtp://127.0.0.1:25"], 'deliver = "smtp://127.0.0.1:25"', "smtp://127.0.0.1:25", []),
    "queue": (["--queue", "/q"], 'queue = "/q"', "/q", []),
    "queue_max_size": (["--queue-max-size", "1K"], "queue_max_size = 1024", 1024, []),
    "queue_max_messages": (["--queue-max-messages", "7"], "queue_max_messages = 7", 7, []),
    "deliver_concurrency": (["--deliver-concurrency", "2"], "deliver_concurrency = 2", 2, []),
    "deliver_ca_file": (["--deliver-ca-file", "/ca"], 'deliver_ca_file = "/ca"', "/ca", []),
    "webhook_secret_file": (["--webhook-secret-file", "/s"], 'webhook_secret_file = "/s"', "/s", []),
    "webhook_format": (["--webhook-format", "json"], 'webhook_format = "json"', "json", []),
    "relay_auth_file": (["--relay-auth-file", "/r"], 'relay_auth_file = "/r"', "/r", []),
    "retry_min": (["--retry-min", "5"], "retry_min = 5", 5.0, []),
    "retry_max_age": (["--retry-max-age", "12h"], "retry_max_age = 43200", 43200.0, []),
    "bounce": (["--bounce"], "bounce = true", True, []),
    "metrics": (["--metrics", "127.0.0.1:9100"], 'metrics = "127.0.0.1:9100"', ("127.0.0.1", 9100), []),
    "limit_connections": (["--limit-connections", "4"], "limit_connections = 4", 4, []),
    "limit_connection_rate": (["--limit-connection-rate", "10/min"], 'limit_connection_rate = "10/min"', "10/min", []),
    "limit_messages": (["--limit-messages", "5/s"], 'limit_messages = "5/s"', "5/s", []),
    "limit_recipients": (["--limit-recipients", "100/h"], 'limit_recipients = "100/h"', "100/h", []),
    "limit_trusted": (["--limit-trusted", "10.0.0.0/8"], 'limit_trusted = ["10.0.0.0/8"]', ["10.0.0.0/8"], []),
    "limits_redis": (["--limits-redis", "redis://r:1/0"], 'limits_redis = "redis://r:1/0"', "redis://r:1/0", []),
    "redis_replicas": (["--redis-replicas", "1"], "redis_replicas = 1", 1, []),
    "redis_stream": (["--redis-stream", "mail"], 'redis_stream = "mail"', "mail", []),
    "redis_password_file": (["--redis-password-file", "/pw"], 'redis_password_file = "/pw"', "/pw", []),
    "verify": (["--verify=enforce"], 'verify = "enforce"', "enforce", []),
    "dns": (["--dns", "127.0.0.1:53"], 'dns = ["127.0.0.1:53"]', ["127.0.0.1:53"], []),
    "dns_timeout": (["--dns-timeout", "2"], "dns_timeout = 2", 2.0, []),
    "dnsbl": (["--dnsbl", "zen.test=2"], 'dnsbl = ["zen.test=2"]', ["zen.test=2"], []),
    "dnsbl_threshold": (["--dnsbl-threshold", "2.5"], "dnsbl_threshold = 2.5", 2.5, []),
    "authserv_id": (["--authserv-id", "mx"], 'authserv_id = "mx"', "mx", []),
    "log_format": (["--log-format", "json"], 'log_format = "json"', "json", []),
    "log_level": (["--log-level", "debug"], 'log_level = "debug"', "debug", []),
    "uvloop": (["--no-uvloop"], "uvloop = false", False, []),
}


def test_settings_hold_every_group():
    names = [setting.name for group in GROUPS for setting in declared(group)]
    assert sorted(names) == sorted(setting.name for setting in declared(Settings)) == sorted(SETTINGS)


def test_every_flag_has_a_case():
    flags = {name for name, setting in SETTINGS.items() if setting.option.flag is not None}
    assert flags == set(CASES)


def _from_file(tmp_path, text: str, *extra: str) -> Settings:
    path = tmp_path / "smtpgate.toml"
    path.write_text(text + "\n")
    return parse_settings(["--config", str(path), *extra])


@pytest.mark.parametrize("name", sorted(CASES))
def test_flag_and_config_key_agree(tmp_path, name):
    flags, toml, expected, extra = CASES[name]
    assert getattr(parse_settings([*flags, *extra]), name) == expected
    assert getattr(_from_file(tmp_path, toml, *extra), name) == expected
    assert getattr(_from_file(tmp_path, toml.replace("_", "-", name.count("_")), *extra), name) == expected
    default = SETTINGS[name].default
    assert getattr(parse_settings([]), name) == default == getattr(Settings(), name)


def test_flags_win_over_the_file(tmp_path):
    settings = _from_file(tmp_path, 'max_size = "1M"\nlisten = ["127.0.0.1:1"]', "--max-size", "2M", "--port", "3")
    assert settings.max_size == 2 * 1024 * 1024
    assert settings.addresses() == [("127.0.0.1", 3)]  # --port on the command line replaces the file's listen


def test_paths_are_relative_to_the_file(tmp_path):
    settings = _from_file(
        tmp_path,
        'sink = "maildir:mail"\nqueue = "q"\nauth_file = "users"\nlimits_redis = "redis://h:1/0"',
    )
    assert settings.sink == f"maildir:{tmp_path / 'mail'}"
    assert settings.queue == str(tmp_path / "q")
    assert settings.auth_file == str(tmp_path / "users")
    assert settings.limits_redis == "redis://h:1/0"
    assert _from_file(tmp_path, 'sink = "redis://h:1/0"').sink == "redis://h:1/0"
    assert _from_file(tmp_path, 'auth_file = "~/users"').auth_file == os.path.expanduser("~/users")


def test_switch_values_of_the_file(tmp_path):
    assert _from_file(tmp_path, "proxy_protocol = true").proxy_protocol is True
    assert parse_settings(["--proxy-protocol"]).proxy_protocol is True
    assert _from_file(tmp_path, "verify = true").verify == "header"
    assert _from_file(tmp_path, "verify = false").verify is None
    assert parse_settings(["--verify"]).verify == "header"
    assert _from_file(tmp_path, "[server]\nbanner = 'hi'").server == {"banner": "hi"}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("port = '25'", "'port' must be int, got '25'"),
        ("port = 70000", "'port': port 70000 out of range"),
        ("lmtp = 1", "'lmtp' must be bool, got 1"),
        ("max-clients = true", "'max-clients' must be int, got True"),
        ("timeout = 0", "'timeout': seconds must be greater than 0"),
        ("max_size = 'lots'", "'max_size': invalid size 'lots' (examples: 10485760, 10M)"),
        ("listen = ['nowhere']", "'listen': expected host:port, got 'nowhere'"),
        ("log_format = 'xml'", "'log_format': must be 'text' or 'json'"),
        ("webhook_format = 'xml'", "'webhook_format': must be 'raw' or 'json'"),
        ("log_level = 'loud'", "'log_level': must be one of debug, info, warning, error"),
        ("verify = 'x'", "'verify': must be true, false, 'header' or 'enforce'"),
        ("inbox_max_age = 'x'", "'inbox_max_age': invalid duration 'x' (examples: 3600, 90m, 12h, 5d)"),
        ("limit_messages = 'x'", "'limit_messages': "),
        ("server = 5", "'server' must be dict, got 5"),
        ("prot = 1", "unknown key 'prot' (did you mean 'port'?)"),
        ("config = 'x'", "unknown key 'config'"),
    ],
)
def test_bad_config_values(tmp_path, toml, message):
    with pytest.raises(UsageError) as error:
        _from_file(tmp_path, toml)
    assert str(error.value).startswith(f"config file {str(tmp_path / 'smtpgate.toml')!r}: {message}")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "argument --port: port 70000 out of range"),
        (["--max-size", "-5"], "argument --max-size: size must not be negative"),
        (["--dnsbl-threshold", "0"], "argument --dnsbl-threshold: must be greater than 0"),
        (["--listen", "x"], "argument --listen: expected host:port, got 'x'"),
        (["--http", "x"], "argument --http: expected host:port, got 'x'"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--retry-max-age", "0"], "--retry-max-age must be greater than 0"),
        (["--auth-optional"], "--auth-optional needs --auth-file (the users who may authenticate)"),
    ],
)
def test_bad_flags(argv, message):
    with pytest.raises(UsageError) as error:
        parse_settings(argv)
    assert str(error.value) == message
