"""Command-line flags and the TOML config file, merged into `Settings`.

Flags override the config file, which overrides the defaults. Every config key is the
long flag name with ``_`` (or ``-``); a ``[server]`` table passes any other plain
`smtpgate.SMTPServer` option. The settings are declared in `smtpgate.cli.settings`; the
checks that involve several of them are here, after parsing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, NoReturn

from ..limits.policy import TrustedNetworks
from ..sinks import sink_kinds
from .options import Declared, Option, UsageError, add_groups, declared, from_config
from .settings import DEFAULT_INBOX_SINK, DEFAULT_QUEUE, GROUPS, LOG_LEVELS, Settings
from .values import FILE

__all__ = [
    "CONFIG",
    "DEFAULT_INBOX_SINK",
    "DEFAULT_QUEUE",
    "LOG_LEVELS",
    "SETTINGS",
    "Settings",
    "UsageError",
    "build_parser",
    "parse_settings",
]

CONFIG = Option("--config", "TOML config file; flags override it", FILE)
"""The one flag that is not a setting: where the other settings are read from."""

SETTINGS: dict[str, Declared] = {setting.name: setting for setting in declared(Settings)}
"""Every setting by name (the config file's keys)."""


class _Parser(argparse.ArgumentParser):
    """Errors as one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the serving command (``hash-password`` has its own)."""
    parser = _Parser(
        prog="smtpgate",
        description="Receive mail over SMTP (or LMTP) and store it in a Maildir, an mbox file, "
        ".eml files or on stdout. Subcommand: 'smtpgate hash-password [USER]' prints a hash for --auth-file.",
        argument_default=argparse.SUPPRESS,
    )
    CONFIG.add_to(parser, "config", None)
    add_groups(parser, GROUPS)
    return parser


def _load_toml(path: str) -> dict[str, Any]:
    try:
        toml: Any = importlib.import_module("tomllib")
    except ImportError:  # Python 3.10
        try:
            toml = importlib.import_module("tomli")
        except ImportError:
            raise UsageError("--config needs Python 3.11+ (or the tomli package)") from None
    try:
        with open(path, "rb") as handle:
            data: dict[str, Any] = toml.load(handle)
    except OSError as error:
        raise UsageError(f"cannot read config file {path!r}: {error.strerror}") from None
    except ValueError as error:  # tomllib.TOMLDecodeError
        raise UsageError(f"config file {path!r}: {error}") from None
    return data


def _from_config(path: str) -> dict[str, Any]:
    """The config file's values, checked and converted like the flags."""
    return from_config(path, _load_toml(path), SETTINGS)


def parse_settings(argv: list[str]) -> Settings:
    """Flags over config file over defaults; raises `UsageError`."""
    flags = vars(build_parser().parse_args(argv))
    config_path = flags.pop("config", None)
    values = _from_config(config_path) if config_path else {}
    if "proxy_protocol" in flags:
        trusted = flags["proxy_protocol"]
        flags["proxy_protocol"] = trusted if trusted else True
    if ("host" in flags or "port" in flags) and "listen" not in flags:
        values.pop("listen", None)  # --host/--port on the command line win over the file's listen
    values.update(flags)
    if values.get("http") is not None and "sink" not in values:
        values["sink"] = DEFAULT_INBOX_SINK  # --http without --sink: mail goes to the inbox
    if values.get("deliver") and "sink" not in values:
        values["sink"] = ""  # --deliver alone: the queue is the only store
    settings = Settings(**values)
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise UsageError("--tls-cert and --tls-key must be given together")
    if settings.tls_passphrase_file is not None and settings.tls_key is None:
        raise UsageError("--tls-passphrase-file needs --tls-key (the key it decrypts)")
    if settings.auth_optional and settings.auth_file is None:
        raise UsageError("--auth-optional needs --auth-file (the users who may authenticate)")
    kind, sep, where = settings.sink.partition(":")
    kinds = sink_kinds()
    if (
        settings.sink
        and not (kind == "stdout" and not sep)
        and (kind.lower() not in kinds or kind == "stdout" or not where)
    ):
        forms = ", ".join(f"{name}:..." for name in kinds if name != "stdout")
        raise UsageError(f"invalid sink {settings.sink!r}: expected {forms} or stdout")
    if settings.workers < 1:
        raise UsageError("--workers must be at least 1")
    if settings.http is not None and settings.workers > 1:
        raise UsageError("--http needs a single process: drop --workers (the inbox has one writer)")
    if settings.sink.lower().startswith("inbox:") and settings.workers > 1:
        raise UsageError("the inbox sink needs a single process: drop --workers (the inbox has one writer)")
    if settings.http_auth_file is not None and settings.http is None:
        raise UsageError("--http-auth-file needs --http")
    if settings.retry_max_age <= 0:
        raise UsageError("--retry-max-age must be greater than 0")
    if settings.deliver is not None and settings.deliver_concurrency < 1:
        raise UsageError("--deliver-concurrency must be at least 1")
    if settings.workers > 1 and sys.platform == "win32":  # pragma: no cover
        raise UsageError("--workers needs a POSIX system")
    for name in settings.server:
        if name.startswith("on_") or name == "resolver":
            raise UsageError(f"[server] option {name!r} cannot be set from a config file")
    if settings.metrics is not None and settings.workers > 1:
        raise UsageError("--metrics needs --workers 1 (run one receiver per process behind a load balancer)")
    try:
        TrustedNetworks(settings.limit_trusted)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return settings
