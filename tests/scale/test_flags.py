"""The command's scale-out flags and config keys: parsed, checked, turned into a policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpgate.cli.config import UsageError, parse_settings
from smtpgate.cli.scale import limit_policy
from smtpgate.limits import LimitPolicy, Rate


def test_flags_make_the_policy() -> None:
    settings = parse_settings(
        [
            "--limit-connections",
            "5",
            "--limit-connection-rate",
            "30/min",
            "--limit-messages",
            "10/s",
            "--limit-recipients",
            "7/10s",
            "--limit-trusted",
            "10.0.0.0/8",
            "--limit-trusted",
            "::1",
            "--metrics",
            "[::1]:9025",
        ]
    )
    assert settings.metrics == ("::1", 9025)
    assert limit_policy(settings) == LimitPolicy(
        connections=5,
        connection_rate=Rate(30, 60),
        messages=Rate(10, 1),
        recipients=Rate(7, 10),
        trusted=("10.0.0.0/8", "::1"),
    )
    assert not limit_policy(parse_settings([])).active
    assert parse_settings(["--metrics", "9025"]).metrics == ("127.0.0.1", 9025)
    assert parse_settings(["--metrics", ":9025"]).metrics == ("127.0.0.1", 9025)


def test_config_file_keys(tmp_path: Path) -> None:
    (tmp_path / "redis-password").write_text("secret\n")
    config = tmp_path / "smtpgate.toml"
    config.write_text(
        'metrics = "127.0.0.1:9025"\nlimit_messages = "100/min"\nlimit_trusted = ["10.0.0.0/8"]\n'
        'limits_redis = "redis://127.0.0.1:6379/1"\nsink = "redis://127.0.0.1:6379/0?stream=x"\n'
        'redis_replicas = 1\nredis_password_file = "redis-password"\n'
    )
    settings = parse_settings(["--config", str(config)])
    assert settings.sink == "redis://127.0.0.1:6379/0?stream=x"  # a URL, not a path to resolve
    assert settings.redis_password_file == str(tmp_path / "redis-password")
    assert (settings.redis_replicas, settings.limit_messages, settings.limit_trusted) == (1, "100/min", ["10.0.0.0/8"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--limit-messages", "lots"], "invalid rate 'lots'"),
        (["--limit-trusted", "10.0.0.0/33"], "invalid trusted network"),
        (["--metrics", "nowhere"], "expected host:port"),
        (["--metrics", "127.0.0.1:9025", "--workers", "2"], "--metrics needs --workers 1"),
        (["--redis-replicas", "-1"], "must not be negative"),
    ],
)
def test_bad_flags_are_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_settings(argv)
