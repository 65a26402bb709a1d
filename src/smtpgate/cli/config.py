"""Command-line flags and the TOML config file, merged into `Settings`.

Flags override the config file, which overrides the defaults. Every config key is the
long flag name with ``_`` (or ``-``); a ``[server]`` table passes any other plain
`smtpgate.SMTPServer` option.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from dataclasses import dataclass, field, fields
from typing import Any, NoReturn

from ..limits.policy import TrustedNetworks, parse_rate
from ..sinks import sink_kinds

__all__ = ["Settings", "UsageError", "parse_settings", "build_parser"]

DEFAULT_PORT = 2525
DEFAULT_MAX_SIZE = 25 * 1024 * 1024
DEFAULT_QUEUE = "./queue"
DEFAULT_QUEUE_MAX_SIZE = 1024**3
DEFAULT_QUEUE_MAX_MESSAGES = 100_000
DEFAULT_RETRY_MIN = 60.0
DEFAULT_RETRY_MAX_AGE = 5 * 86400.0
DEFAULT_DELIVER_CONCURRENCY = 10
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_INBOX_SINK = "inbox:./inbox.sqlite3"
VERIFY_MODES = ("header", "enforce")


class UsageError(Exception):
    """A bad flag, config file or value: one line for stderr, exit status 2."""


@dataclass
class Settings:
    """Everything the command was asked to do."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    listen: list[tuple[str, int]] = field(default_factory=list)
    name: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_passphrase_file: str | None = None
    implicit_tls: bool = False
    require_tls: bool = False
    auth_file: str | None = None
    auth_optional: bool = False
    allow_insecure_auth: bool = False
    max_size: int = DEFAULT_MAX_SIZE
    max_clients: int = 0
    timeout: float | None = None
    close_timeout: float | None = None
    lmtp: bool = False
    proxy_protocol: bool | list[str] = False
    workers: int = 1
    sink: str = "maildir:./maildir"
    log_format: str = "text"
    log_level: str = "info"
    uvloop: bool = True
    verify: str | None = None
    dns: list[str] = field(default_factory=list)
    dns_timeout: float = 5.0
    dnsbl: list[str] = field(default_factory=list)
    dnsbl_threshold: float = 1.0
    authserv_id: str | None = None
    server: dict[str, Any] = field(default_factory=dict)
    http: tuple[str, int] | None = None
    http_auth_file: str | None = None
    inbox_max_messages: int = 0
    inbox_max_age: float = 0.0
    metrics: tuple[str, int] | None = None
    limit_connections: int = 0
    limit_connection_rate: str = ""
    limit_messages: str = ""
    limit_recipients: str = ""
    limit_trusted: list[str] = field(default_factory=list)
    limits_redis: str | None = None
    redis_replicas: int = 0
    redis_stream: str | None = None
    redis_password_file: str | None = None
    deliver: str | None = None
    queue: str = DEFAULT_QUEUE
    queue_max_size: int = DEFAULT_QUEUE_MAX_SIZE
    queue_max_messages: int = DEFAULT_QUEUE_MAX_MESSAGES
    deliver_concurrency: int = DEFAULT_DELIVER_CONCURRENCY
    deliver_ca_file: str | None = None
    webhook_secret_file: str | None = None
    webhook_format: str = "raw"
    relay_auth_file: str | None = None
    retry_min: float = DEFAULT_RETRY_MIN
    retry_max_age: float = DEFAULT_RETRY_MAX_AGE
    bounce: bool = False

    def addresses(self) -> list[tuple[str, int]]:
        """Where to listen: every ``--listen``, else ``--host``/``--port``."""
        return list(self.listen) if self.listen else [(self.host, self.port)]


_KEYS = {f.name for f in fields(Settings)}


class _Parser(argparse.ArgumentParser):
    """Errors as one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port``."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host:
        raise ValueError(f"expected host:port, got {text!r}")
    return host, _port(port)


def _port(text: str | int) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"invalid port {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} out of range")
    return number


def _size(text: str) -> int:
    """A byte count with an optional K/M/G suffix (powers of 1024)."""
    value = text.strip().upper().removesuffix("B")
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(value[-1:], 1)
    if scale > 1:
        value = value[:-1]
    try:
        number = int(value) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (examples: 10485760, 10M)") from None
    if number < 0:
        raise argparse.ArgumentTypeError("size must not be negative")
    return number


def _seconds(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError("seconds must be greater than 0")
    return number


def _positive(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


def _count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def parse_http_address(text: str) -> tuple[str, int]:
    """``host:port``, ``[ipv6]:port``, ``:port`` or ``port`` (host 127.0.0.1)."""
    value = text.strip()
    if value.isdigit():
        return "127.0.0.1", _port(value)
    if value.startswith(":") and value[1:].isdigit():
        return "127.0.0.1", _port(value[1:])
    return parse_address(value)


def _http_arg(text: str) -> tuple[str, int]:
    try:
        return parse_http_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _duration(text: str) -> float:
    """Seconds, or a number with a unit: ``90s``, ``30m``, ``12h``, ``5d``, ``1w``."""
    value = text.strip().lower()
    scale = _DURATION_UNITS.get(value[-1:], 0.0)
    if scale:
        value = value[:-1]
    try:
        number = float(value) * (scale or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 3600, 90m, 12h, 5d)") from None
    if number < 0:
        raise argparse.ArgumentTypeError("a duration must not be negative")
    return number


def _address_arg(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _port_arg(text: str) -> int:
    try:
        return _port(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    """The parser of the serving command (``hash-password`` has its own)."""
    parser = _Parser(
        prog="smtpgate",
        description="Receive mail over SMTP (or LMTP) and store it in a Maildir, an mbox file, "
        ".eml files or on stdout. Subcommand: 'smtpgate hash-password [USER]' prints a hash for --auth-file.",
        argument_default=argparse.SUPPRESS,
    )
    add = parser.add_argument
    add("--config", metavar="FILE", help="TOML config file; flags override it")
    add("--host", help="address to listen on (default 127.0.0.1)")
    add("--port", type=_port_arg, help=f"port to listen on (default {DEFAULT_PORT})")
    add("--listen", type=_address_arg, action="append", metavar="HOST:PORT", help="listen here (repeatable)")
    add("--name", help="host name in the greeting and EHLO reply (default: the FQDN)")
    add("--tls-cert", metavar="FILE", help="PEM certificate chain (default: a generated self-signed one)")
    add("--tls-key", metavar="FILE", help="PEM private key")
    add("--tls-passphrase-file", metavar="FILE", help="file holding the pass phrase of an encrypted --tls-key")
    add("--implicit-tls", action="store_true", help="TLS from the first byte (SMTPS, port 465 style)")
    add("--require-tls", action="store_true", help="refuse MAIL until the client used STARTTLS")
    add("--auth-file", metavar="FILE", help="user:hash lines; AUTH PLAIN/LOGIN required unless --auth-optional")
    add("--auth-optional", action="store_true", help="offer AUTH but accept mail without it")
    add("--allow-insecure-auth", action="store_true", help="allow AUTH before STARTTLS")
    add("--max-size", type=_size, metavar="BYTES", help="largest message, e.g. 10M; 0: no limit (default 25M)")
    add("--max-clients", type=_count, metavar="N", help="simultaneous connections per process (default: no limit)")
    add("--timeout", type=_seconds, metavar="SECONDS", help="idle timeout of a connection (default 60)")
    add("--close-timeout", type=_seconds, metavar="SECONDS", help="how long shutdown waits for sessions (default 30)")
    add("--lmtp", action="store_true", help="speak LMTP instead of SMTP")
    add(
        "--proxy-protocol",
        nargs="*",
        metavar="TRUSTED",
        help="expect a PROXY v1/v2 header, from anyone or only from these addresses/networks",
    )
    add("--workers", type=_count, metavar="N", help="worker processes sharing the port (default 1)")
    add("--sink", metavar="SPEC", help="maildir:DIR (default maildir:./maildir), mbox:FILE, dir:DIR, stdout, ...")
    add("--log-format", choices=("text", "json"), help="log and message lines as text (default) or JSON")
    add("--log-level", choices=LOG_LEVELS, help="default info")
    add("--no-uvloop", dest="uvloop", action="store_false", help="do not use uvloop even if installed")
    add(
        "--metrics",
        type=_http_arg,
        metavar="HOST:PORT",
        help="serve /livez, /readyz and /metrics over HTTP here (PORT alone: 127.0.0.1)",
    )
    add("--limit-connections", type=_count, metavar="N", help="concurrent connections per client (default: no limit)")
    add("--limit-connection-rate", type=_rate_arg, metavar="N/min", help="new connections per client")
    add("--limit-messages", type=_rate_arg, metavar="N/min", help="messages per client and per sender")
    add("--limit-recipients", type=_rate_arg, metavar="N/min", help="recipients per client and per sender")
    add("--limit-trusted", action="append", metavar="CIDR", help="network exempt from the limits (repeatable)")
    add("--limits-redis", metavar="URL", help="keep the limit counters in Redis, shared by every receiver")
    add("--redis-replicas", type=_count, metavar="N", help="redis sink: 250 only once N replicas have it (WAIT)")
    add("--redis-stream", metavar="NAME", help="redis sink: the stream's name (default smtpgate)")
    add("--redis-password-file", metavar="FILE", help="Redis password (or user:password) for the sink and limits")
    add(
        "--http",
        type=_http_arg,
        metavar="HOST:PORT",
        help="serve the inbox web UI and API here (host 127.0.0.1 unless given); "
        "without --sink, mail goes to inbox:./inbox.sqlite3",
    )
    add("--http-auth-file", metavar="FILE", help="user:hash lines (like --auth-file): HTTP basic auth for --http")
    add("--inbox-max-messages", type=_count, metavar="N", help="keep at most N messages in the inbox (default 0: all)")
    add(
        "--inbox-max-age",
        type=_duration,
        metavar="DURATION",
        help="delete inbox messages older than this, e.g. 24h, 7d (default 0: keep)",
    )
    add(
        "--deliver",
        metavar="URL",
        help="queue every message and hand it on: http(s)://... (webhook), smtp://HOST:PORT, "
        "smtps://HOST:PORT, lmtp://HOST:PORT or lmtp:/PATH",
    )
    add("--queue", metavar="DIR", help=f"the delivery queue's directory (default {DEFAULT_QUEUE})")
    add("--queue-max-size", type=_size, metavar="BYTES", help="queue size before 452 replies (default 1G)")
    add(
        "--queue-max-messages",
        type=_count,
        metavar="N",
        help=f"queued messages before 452 replies (default {DEFAULT_QUEUE_MAX_MESSAGES})",
    )
    add(
        "--deliver-concurrency",
        type=_count,
        metavar="N",
        help=f"deliveries in flight per process (default {DEFAULT_DELIVER_CONCURRENCY})",
    )
    add("--deliver-ca-file", metavar="FILE", help="PEM CA certificates to trust for delivery (default: the system's)")
    add("--webhook-secret-file", metavar="FILE", help="file holding the Standard Webhooks secret (whsec_...)")
    add("--webhook-format", choices=("raw", "json"), help="webhook body: raw message/rfc822 (default) or json")
    add("--relay-auth-file", metavar="FILE", help="file holding USER:PASSWORD for the relay's AUTH")
    add("--retry-min", type=_seconds, metavar="SECONDS", help="delay of the first retry, then doubled (default 60)")
    add(
        "--retry-max-age", type=_duration, metavar="DURATION", help="dead-letter after this long, e.g. 12h (default 5d)"
    )
    add("--bounce", action="store_true", help="send an RFC 3464 bounce to the sender of each dead letter")
    add(
        "--verify",
        nargs="?",
        const="header",
        choices=VERIFY_MODES,
        help="check SPF, DKIM, DMARC and ARC and add an Authentication-Results header; "
        "--verify=enforce also refuses what the policies refuse",
    )
    add(
        "--dns",
        action="append",
        metavar="HOST[:PORT]",
        help="name server for the checks (repeatable; default: the system's)",
    )
    add("--dns-timeout", type=_seconds, metavar="SECONDS", help="time for one DNS lookup (default 5)")
    add(
        "--dnsbl",
        action="append",
        metavar="ZONE[=WEIGHT]",
        help="DNS blocklist to ask at connect (repeatable; weight 1)",
    )
    add("--dnsbl-threshold", type=_positive, metavar="N", help="blocklist score that refuses a client (default 1)")
    add("--authserv-id", metavar="NAME", help="name in the Authentication-Results header (default: --name)")
    return parser


def _rate_arg(text: str) -> str:
    try:
        parse_rate(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


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


def _check_type(path: str, key: str, value: Any, expected: Any) -> None:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise UsageError(f"config file {path!r}: {key!r} must be {kinds[0].__name__}, got {value!r}")


_TYPES: dict[str, Any] = {
    "host": str,
    "port": int,
    "name": str,
    "tls_cert": str,
    "tls_key": str,
    "tls_passphrase_file": str,
    "implicit_tls": bool,
    "require_tls": bool,
    "auth_file": str,
    "auth_optional": bool,
    "allow_insecure_auth": bool,
    "max_size": (int, str),
    "max_clients": int,
    "timeout": (float, int),
    "close_timeout": (float, int),
    "lmtp": bool,
    "proxy_protocol": (bool, list),
    "workers": int,
    "sink": str,
    "log_format": str,
    "log_level": str,
    "uvloop": bool,
    "server": dict,
    "listen": list,
    "http": str,
    "http_auth_file": str,
    "inbox_max_messages": int,
    "inbox_max_age": (float, int, str),
    "metrics": str,
    "limit_connections": int,
    "limit_connection_rate": str,
    "limit_messages": str,
    "limit_recipients": str,
    "limit_trusted": list,
    "limits_redis": str,
    "redis_replicas": int,
    "redis_stream": str,
    "redis_password_file": str,
    "deliver": str,
    "queue": str,
    "queue_max_size": (int, str),
    "queue_max_messages": int,
    "deliver_concurrency": int,
    "deliver_ca_file": str,
    "webhook_secret_file": str,
    "webhook_format": str,
    "relay_auth_file": str,
    "retry_min": (float, int),
    "retry_max_age": (float, int, str),
    "bounce": bool,
    "verify": (bool, str),
    "dns": list,
    "dns_timeout": (float, int),
    "dnsbl": list,
    "dnsbl_threshold": (float, int),
    "authserv_id": str,
}


def _verify_mode(value: bool | str) -> str | None:
    """The config file's ``verify``: true, false, "header" or "enforce"."""
    if isinstance(value, bool):
        return "header" if value else None
    if value not in VERIFY_MODES:
        raise ValueError(f"must be true, false, {' or '.join(repr(m) for m in VERIFY_MODES)}")
    return value


def _from_config(path: str) -> dict[str, Any]:
    """The config file's values, checked and converted like the flags."""
    data = _load_toml(path)
    values: dict[str, Any] = {}
    base = os.path.dirname(os.path.abspath(path))
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key not in _KEYS:
            hint = difflib.get_close_matches(key, sorted(_KEYS), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise UsageError(f"config file {path!r}: unknown key {raw_key!r}{extra}")
        _check_type(path, raw_key, value, _TYPES[key])
        try:
            if key == "listen":
                value = [parse_address(str(item)) for item in value]
            elif key == "port":
                value = _port(value)
            elif key in ("max_size", "queue_max_size"):
                value = _size(str(value))
            elif key in ("timeout", "close_timeout", "retry_min", "dns_timeout"):
                value = _seconds(str(value))
            elif key == "metrics":
                value = parse_http_address(value)
            elif key == "http":
                value = parse_http_address(value)
            elif key in ("limit_connection_rate", "limit_messages", "limit_recipients"):
                parse_rate(value)
            elif key in ("limit_trusted", "dns", "dnsbl"):
                value = [str(item) for item in value]
            elif key in ("retry_max_age", "inbox_max_age"):
                value = _duration(str(value))
            elif key == "webhook_format" and value not in ("raw", "json"):
                raise ValueError("must be 'raw' or 'json'")
            elif key == "dnsbl_threshold":
                value = _positive(str(value))
            elif key == "verify":
                value = _verify_mode(value)
            elif key in (
                "max_clients",
                "workers",
                "queue_max_messages",
                "deliver_concurrency",
                "limit_connections",
                "redis_replicas",
                "inbox_max_messages",
            ):
                value = _count(str(value))
            elif key == "log_format" and value not in ("text", "json"):
                raise ValueError("must be 'text' or 'json'")
            elif key == "log_level" and value not in LOG_LEVELS:
                raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
            elif key == "proxy_protocol" and isinstance(value, list):
                value = [str(item) for item in value]
        except (ValueError, argparse.ArgumentTypeError) as error:
            raise UsageError(f"config file {path!r}: {raw_key!r}: {error}") from None
        if key in (
            "http_auth_file",
            "tls_cert",
            "tls_key",
            "tls_passphrase_file",
            "auth_file",
            "queue",
            "deliver_ca_file",
            "webhook_secret_file",
            "relay_auth_file",
            "redis_password_file",
        ):
            value = os.path.join(base, os.path.expanduser(value))
        elif key == "sink" and ":" in value and not value.partition(":")[2].startswith("//"):
            kind, _, where = value.partition(":")
            value = f"{kind}:{os.path.join(base, os.path.expanduser(where))}"
        values[key] = value
    return values


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
