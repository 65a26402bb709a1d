"""Every setting of the ``smtpgate`` command, declared once, grouped by topic.

Each field is a flag (``--max-size``) and a config file key (``max_size`` or
``max-size``); see `smtpgate.cli.options` for what is derived from the declaration.
`Settings` is all the groups together; ``docs/cli.md`` has a table per group, checked
against these declarations by the tests.

To add a setting: a field in its group with `option` (or `repeated`), a row in its
group's table in ``docs/cli.md`` with the same default, a case in
``tests/cli/test_settings.py``; checks across settings go in `config.parse_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..options import ServerOptions
from ..queue.local import DEFAULT_MAX_MESSAGES as DEFAULT_QUEUE_MAX_MESSAGES
from ..queue.local import DEFAULT_MAX_SIZE as DEFAULT_QUEUE_MAX_SIZE
from ..queue.worker import DEFAULT_CONCURRENCY as DEFAULT_DELIVER_CONCURRENCY
from ..queue.worker import DEFAULT_MAX_AGE as DEFAULT_RETRY_MAX_AGE
from ..queue.worker import DEFAULT_RETRY_MIN
from .options import Choice, Group, ListOrSwitch, OptionalChoice, option, repeated, table
from .values import (
    ADDRESS,
    COUNT,
    DURATION,
    FILE,
    HTTP_ADDRESS,
    PORT,
    POSITIVE,
    RATE,
    SECONDS,
    SINK,
    SIZE,
    SWITCH,
    TEXT,
    show_number,
)

__all__ = ["GROUPS", "Settings"]

DEFAULT_PORT = 2525
DEFAULT_MAX_SIZE = 25 * 1024 * 1024
DEFAULT_SINK = "maildir:./maildir"
DEFAULT_INBOX_SINK = "inbox:./inbox.sqlite3"
DEFAULT_QUEUE = "./queue"
LOG_LEVELS = ("debug", "info", "warning", "error")
VERIFY_MODES = ("header", "enforce")


def _library_default(name: str) -> str:
    """An `smtpgate.SMTPServer` default the command keeps unless told otherwise."""
    return f"`{show_number(getattr(ServerOptions, name))}`"


@dataclass
class Listening(Group):
    title = "listening"

    host: str = option("127.0.0.1", TEXT, "--host", "address to listen on", metavar="HOST")
    port: int = option(DEFAULT_PORT, PORT, "--port", "port to listen on; 0 picks a free one")
    listen: list[tuple[str, int]] = repeated(ADDRESS, "--listen", "listen here, instead of --host/--port")
    name: str | None = option(
        None, TEXT, "--name", "host name in the greeting and EHLO reply", metavar="NAME", shown="the FQDN"
    )
    lmtp: bool = option(False, SWITCH, "--lmtp", "speak LMTP instead of SMTP")
    proxy_protocol: bool | list[str] = option(
        False,
        ListOrSwitch(),
        "--proxy-protocol",
        "expect a PROXY v1/v2 header, from anyone or only from these addresses/networks",
        metavar="TRUSTED",
    )
    workers: int = option(1, COUNT, "--workers", "worker processes sharing the port")


@dataclass
class Tls(Group):
    title = "TLS"

    tls_cert: str | None = option(
        None, FILE, "--tls-cert", "PEM certificate chain", shown="a generated self-signed one"
    )
    tls_key: str | None = option(None, FILE, "--tls-key", "PEM private key", shown="a generated one")
    tls_passphrase_file: str | None = option(
        None, FILE, "--tls-passphrase-file", "file holding the pass phrase of an encrypted --tls-key"
    )
    implicit_tls: bool = option(False, SWITCH, "--implicit-tls", "TLS from the first byte (SMTPS, port 465 style)")
    require_tls: bool = option(False, SWITCH, "--require-tls", "refuse MAIL until the client used STARTTLS")


@dataclass
class Auth(Group):
    title = "AUTH"

    auth_file: str | None = option(
        None, FILE, "--auth-file", "user:hash lines; AUTH PLAIN/LOGIN required unless --auth-optional"
    )
    auth_optional: bool = option(False, SWITCH, "--auth-optional", "offer AUTH but accept mail without it")
    allow_insecure_auth: bool = option(False, SWITCH, "--allow-insecure-auth", "allow AUTH before STARTTLS")


@dataclass
class Sessions(Group):
    title = "sessions"

    max_size: int = option(DEFAULT_MAX_SIZE, SIZE, "--max-size", "largest message, e.g. 10M; 0: no limit")
    max_clients: int = option(0, COUNT, "--max-clients", "simultaneous connections per process", shown="no limit")
    timeout: float | None = option(
        None, SECONDS, "--timeout", "idle timeout of a connection", shown=_library_default("socket_timeout")
    )
    close_timeout: float | None = option(
        None,
        SECONDS,
        "--close-timeout",
        "how long shutdown waits for sessions",
        shown=_library_default("close_timeout"),
    )
    server: dict[str, Any] = table("[server] table of the config file: other plain SMTPServer options")


@dataclass
class Storing(Group):
    title = "storing"

    sink: str = option(
        DEFAULT_SINK, SINK, "--sink", "where messages go: maildir:DIR, mbox:FILE, dir:DIR, stdout, inbox:FILE, ..."
    )


@dataclass
class Inbox(Group):
    title = "inbox and HTTP"

    http: tuple[str, int] | None = option(
        None,
        HTTP_ADDRESS,
        "--http",
        f"serve the inbox web UI and API here (host 127.0.0.1 unless given); without --sink, mail goes to "
        f"{DEFAULT_INBOX_SINK}",
        shown="off",
    )
    http_auth_file: str | None = option(
        None, FILE, "--http-auth-file", "user:hash lines (like --auth-file): HTTP basic auth for --http"
    )
    inbox_max_messages: int = option(
        0, COUNT, "--inbox-max-messages", "keep at most N messages in the inbox", shown="`0` (all)"
    )
    inbox_max_age: float = option(
        0.0,
        DURATION,
        "--inbox-max-age",
        "delete inbox messages older than this, e.g. 24h, 7d",
        shown="`0` (keep)",
    )


@dataclass
class Delivery(Group):
    title = "delivery"

    deliver: str | None = option(
        None,
        TEXT,
        "--deliver",
        "queue every message and hand it on: http(s)://... (webhook), smtp://HOST:PORT, "
        "smtps://HOST:PORT, lmtp://HOST:PORT or lmtp:/PATH",
        metavar="URL",
    )
    queue: str = option(DEFAULT_QUEUE, FILE, "--queue", "the delivery queue's directory", metavar="DIR")
    queue_max_size: int = option(DEFAULT_QUEUE_MAX_SIZE, SIZE, "--queue-max-size", "queue size before 452 replies")
    queue_max_messages: int = option(
        DEFAULT_QUEUE_MAX_MESSAGES, COUNT, "--queue-max-messages", "queued messages before 452 replies"
    )
    deliver_concurrency: int = option(
        DEFAULT_DELIVER_CONCURRENCY, COUNT, "--deliver-concurrency", "deliveries in flight per process"
    )
    deliver_ca_file: str | None = option(
        None, FILE, "--deliver-ca-file", "PEM CA certificates to trust for delivery", shown="the system's CAs"
    )
    webhook_secret_file: str | None = option(
        None, FILE, "--webhook-secret-file", "file holding the Standard Webhooks secret (whsec_...)"
    )
    webhook_format: str = option(
        "raw", Choice("raw", "json"), "--webhook-format", "webhook body: raw message/rfc822 or json"
    )
    relay_auth_file: str | None = option(
        None, FILE, "--relay-auth-file", "file holding USER:PASSWORD for the relay's AUTH"
    )
    retry_min: float = option(DEFAULT_RETRY_MIN, SECONDS, "--retry-min", "delay of the first retry, then doubled")
    retry_max_age: float = option(
        DEFAULT_RETRY_MAX_AGE, DURATION, "--retry-max-age", "dead-letter after this long, e.g. 12h"
    )
    bounce: bool = option(False, SWITCH, "--bounce", "send an RFC 3464 bounce to the sender of each dead letter")


@dataclass
class Scale(Group):
    title = "limits, metrics and the Redis stream"

    metrics: tuple[str, int] | None = option(
        None,
        HTTP_ADDRESS,
        "--metrics",
        "serve /livez, /readyz and /metrics over HTTP here (PORT alone: 127.0.0.1)",
        shown="off",
    )
    limit_connections: int = option(
        0, COUNT, "--limit-connections", "concurrent connections per client", shown="no limit"
    )
    limit_connection_rate: str = option(
        "", RATE, "--limit-connection-rate", "new connections per client", shown="no limit"
    )
    limit_messages: str = option("", RATE, "--limit-messages", "messages per client and per sender", shown="no limit")
    limit_recipients: str = option(
        "", RATE, "--limit-recipients", "recipients per client and per sender", shown="no limit"
    )
    limit_trusted: list[str] = repeated(TEXT, "--limit-trusted", "network exempt from the limits", metavar="CIDR")
    limits_redis: str | None = option(
        None,
        TEXT,
        "--limits-redis",
        "keep the limit counters in Redis, shared by every receiver",
        metavar="URL",
        shown="in-process",
    )
    redis_replicas: int = option(
        0, COUNT, "--redis-replicas", "with a redis:// sink: 250 only once N replicas have it (WAIT)"
    )
    redis_stream: str | None = option(
        None, TEXT, "--redis-stream", "the Redis stream's name (a redis:// sink)", metavar="NAME", shown="`smtpgate`"
    )
    redis_password_file: str | None = option(
        None, FILE, "--redis-password-file", "file holding the Redis password (or user:password)"
    )


@dataclass
class Checks(Group):
    title = "sender checks"

    verify: str | None = option(
        None,
        OptionalChoice(*VERIFY_MODES, const="header"),
        "--verify",
        "check SPF, DKIM, DMARC and ARC and add an Authentication-Results header; "
        "--verify=enforce also refuses what the policies refuse",
        shown="off",
    )
    dns: list[str] = repeated(
        TEXT,
        "--dns",
        "name server for the checks",
        metavar="HOST[:PORT]",
        shown="the system's resolvers",
    )
    dns_timeout: float = option(5.0, SECONDS, "--dns-timeout", "time for one DNS lookup")
    dnsbl: list[str] = repeated(
        TEXT, "--dnsbl", "DNS blocklist to ask at connect, weight 1 unless given", metavar="ZONE[=WEIGHT]"
    )
    dnsbl_threshold: float = option(1.0, POSITIVE, "--dnsbl-threshold", "blocklist score that refuses a client")
    authserv_id: str | None = option(
        None,
        TEXT,
        "--authserv-id",
        "name in the Authentication-Results header",
        metavar="NAME",
        shown="`--name`",
    )


@dataclass
class Logging(Group):
    title = "logging and event loop"

    log_format: str = option("text", Choice("text", "json"), "--log-format", "log and message lines as text or JSON")
    log_level: str = option("info", Choice(*LOG_LEVELS), "--log-level", "the least important logs shown")
    uvloop: bool = option(
        True, SWITCH, "--no-uvloop", "do not use uvloop even if installed", shown="uvloop if installed"
    )


GROUPS: tuple[type[Group], ...] = (
    Listening,
    Tls,
    Auth,
    Sessions,
    Storing,
    Inbox,
    Delivery,
    Scale,
    Checks,
    Logging,
)


@dataclass
class Settings(Logging, Checks, Scale, Delivery, Inbox, Storing, Sessions, Auth, Tls, Listening):
    """Everything the command was asked to do: the settings of every group."""

    def addresses(self) -> list[tuple[str, int]]:
        """Where to listen: every ``--listen``, else ``--host``/``--port``."""
        return list(self.listen) if self.listen else [(self.host, self.port)]
