"""Opening a Redis connection from a URL (``redis://``, ``rediss://`` for TLS, ``unix://``),
with the password in the URL or in a file. Used by the Redis limits and the Redis stream;
imports redis-py (the ``scale`` extra) only when called."""

from __future__ import annotations

import importlib
import urllib.parse
from typing import Any

__all__ = ["open_redis", "redact_url", "read_password_file"]


def read_password_file(path: str) -> str:
    """The first line of ``path`` (a Redis password, or ``user:password`` for an ACL user)."""
    with open(path, encoding="utf-8") as file:
        return file.readline().rstrip("\r\n")


def redact_url(url: str) -> str:
    """The URL without its password, for logs and ``describe()``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def open_redis(url: str, *, password_file: str | None = None, timeout: float = 5.0, **options: Any) -> Any:
    """A ``redis.asyncio.Redis`` client for ``url`` (no I/O yet). ``timeout`` bounds
    connecting and every command, so an unreachable or stuck Redis fails fast; a command
    that meets a dead pooled connection is sent once more on a new one.
    Raises ``ValueError`` for a bad URL or ``RuntimeError`` without redis-py."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"invalid Redis URL {redact_url(url)!r}: expected redis://, rediss:// or unix://")
    try:
        redis_asyncio: Any = importlib.import_module("redis.asyncio")
    except ImportError:
        raise RuntimeError("Redis support needs redis-py: pip install 'smtpgate[scale]'") from None
    if password_file is not None:
        secret = read_password_file(password_file)
        user, sep, password = secret.partition(":")
        if sep:
            options.update(username=user, password=password)
        else:
            options["password"] = secret
    options.setdefault("socket_timeout", timeout)
    options.setdefault("socket_connect_timeout", timeout)
    if "retry" not in options:
        # One more try on a fresh connection when a pooled one turns out dead (Redis
        # restarted, a failover): what callers repeat this way must be safe to repeat.
        retry: Any = importlib.import_module("redis.asyncio.retry")
        backoff: Any = importlib.import_module("redis.backoff")
        exceptions: Any = importlib.import_module("redis.exceptions")
        options["retry"] = retry.Retry(backoff.ConstantBackoff(0.05), 1)
        options["retry_on_error"] = [exceptions.ConnectionError]
    try:
        return redis_asyncio.Redis.from_url(url, **options)
    except ValueError as error:
        raise ValueError(f"invalid Redis URL {redact_url(url)!r}: {error}") from None
