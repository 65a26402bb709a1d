"""Prometheus metrics of a receiver and its queue (prometheus-client, the ``scale`` extra).

`Metrics` wraps an SMTPServer's handlers (like `smtpgate.limits.Limiter`), listens to the
server's ``error`` event, and reads queue depth and age when scraped. Every metric is in
the `Metrics.registry` (one per instance, so several servers in one process, and tests,
never collide); `smtpgate.health` serves it as ``/metrics``.

```python
metrics = Metrics()
server = SMTPServer(**metrics.wrap({"on_data": on_data}))
metrics.attach(server)
```
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .errors import SMTPError
from .sasl import AuthResult
from .session import Session
from .stream import DataStreamError, MessageTooLarge

__all__ = ["Metrics", "CountedDeliverer", "QueueStatsSource", "CONTENT_TYPE"]

logger = logging.getLogger("smtpgate.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of `Metrics.render`'s output."""

_OUTCOME = "_smtpgate_metrics_outcome"  # session attribute: "refused" or "message" once known
_OPEN = "_smtpgate_metrics_open"  # session attribute: counted as an open connection
_STATS_TIMEOUT = 2.0


class QueueStatsSource(Protocol):
    """A queue whose depth and age the metrics report (`smtpgate.queue.MessageQueue`)."""

    async def stats(self) -> Any:
        """An object with ``queued``, ``dead``, ``size`` and ``oldest`` (epoch seconds or None)."""
        ...


async def _call(handler: Callable[..., Any], *args: Any) -> Any:
    result = handler(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class Metrics:
    """The counters, gauges and histograms of one receiver (and of a delivery worker)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        r = self.registry
        self.connections = Counter("smtpgate_connections", "Client connections that reached on_connect", registry=r)
        self.connections_active = Gauge("smtpgate_connections_active", "Client connections open now", registry=r)
        self.sessions = Counter(
            "smtpgate_sessions",
            "Sessions ended, by outcome: refused (at connect), message (at least one accepted), no_message",
            ["outcome"],
            registry=r,
        )
        self.messages_accepted = Counter("smtpgate_messages_accepted", "Messages answered 250", registry=r)
        self.messages_refused = Counter(
            "smtpgate_messages_refused",
            "Messages refused after DATA, by reply code (incomplete: the body was broken off or refused)",
            ["code"],
            registry=r,
        )
        self.commands_refused = Counter(
            "smtpgate_commands_refused",
            "MAIL and RCPT refused, by command and reply code",
            ["command", "code"],
            registry=r,
        )
        self.message_bytes = Counter("smtpgate_message_bytes", "Bytes of accepted messages", registry=r)
        self.tls_handshakes = Counter("smtpgate_tls_handshakes", "TLS handshakes completed", registry=r)
        self.tls_failures = Counter("smtpgate_tls_failures", "TLS handshakes that failed or timed out", registry=r)
        self.auth_successes = Counter("smtpgate_auth_successes", "AUTH exchanges accepted", registry=r)
        self.auth_failures = Counter("smtpgate_auth_failures", "AUTH exchanges refused", registry=r)
        self.errors = Counter(
            "smtpgate_errors", "Errors reported by the server, by exception type", ["type"], registry=r
        )
        self.limit_refusals = Counter(
            "smtpgate_limit_refusals", "Refusals by the shared limits, by limit", ["limit"], registry=r
        )
        self.handler_seconds = Histogram(
            "smtpgate_handler_seconds", "Time spent in each handler", ["handler"], registry=r
        )
        self.queue_messages = Gauge("smtpgate_queue_messages", "Messages waiting for delivery", ["queue"], registry=r)
        self.queue_dead = Gauge(
            "smtpgate_queue_dead_messages", "Messages in the dead-letter area", ["queue"], registry=r
        )
        self.queue_bytes = Gauge(
            "smtpgate_queue_bytes", "Bytes of messages waiting for delivery", ["queue"], registry=r
        )
        self.queue_oldest_age = Gauge(
            "smtpgate_queue_oldest_age_seconds", "Age of the oldest message waiting (0 if none)", ["queue"], registry=r
        )
        self.delivery_attempts = Counter(
            "smtpgate_delivery_attempts",
            "Delivery attempts, by outcome: delivered, retry, failed (per message; dead: moved to dead-letter)",
            ["outcome"],
            registry=r,
        )
        self.delivery_seconds = Histogram("smtpgate_delivery_seconds", "Time of one delivery attempt", registry=r)
        self._queues: dict[str, QueueStatsSource] = {}

    # ------------------------------------------------------------------ wiring

    def wrap(self, handlers: Mapping[str, Any]) -> dict[str, Any]:
        """SMTPServer options with every handler timed and counted; handlers not given get
        a counting one only where it is needed (connect, close, secure, MAIL, RCPT, DATA).
        Wrap the limits inside (``metrics.wrap(limiter.wrap(options))``) so that their
        refusals are counted too."""
        options = dict(handlers)
        timed = self._timed

        inner_connect = options.get("on_connect")

        async def on_connect(session: Session) -> Any:
            if not getattr(session, _OPEN, False):  # not again for XCLIENT's new identity
                setattr(session, _OPEN, True)
                self.connections.inc()
                self.connections_active.inc()
            if inner_connect is None:
                return None
            try:
                result = await timed("on_connect", inner_connect, session)
            except SMTPError:
                setattr(session, _OUTCOME, "refused")
                raise
            if isinstance(result, SMTPError):
                setattr(session, _OUTCOME, "refused")
            return result

        inner_close = options.get("on_close")

        async def on_close(session: Session) -> Any:
            if getattr(session, _OPEN, False):
                setattr(session, _OPEN, False)
                self.connections_active.dec()
            self.sessions.labels(getattr(session, _OUTCOME, "no_message")).inc()
            if inner_close is not None:
                return await timed("on_close", inner_close, session)
            return None

        inner_secure = options.get("on_secure")

        async def on_secure(ssl_object: Any, session: Session) -> Any:
            self.tls_handshakes.inc()
            if inner_secure is not None:
                return await timed("on_secure", inner_secure, ssl_object, session)
            return None

        options.update(on_connect=on_connect, on_close=on_close, on_secure=on_secure)
        for name, command in (("on_mail_from", "MAIL"), ("on_rcpt_to", "RCPT")):
            options[name] = self._envelope_handler(name, command, options.get(name))
        if options.get("on_auth") is not None:
            options["on_auth"] = self._auth_handler(options["on_auth"])
        if options.get("on_data") is not None:
            options["on_data"] = self._data_handler(options["on_data"])
        return options

    def attach(self, server: Any) -> None:
        """Count the server's reported errors (TLS handshake failures among them)."""
        server.on("error", self._on_error)

    def add_queue(self, name: str, queue: QueueStatsSource) -> None:
        """Report this queue's depth and age (read at each scrape)."""
        self._queues[name] = queue

    def count_refusal(self, limit: str) -> None:
        """A limit refused (hook for `smtpgate.limits.Limiter.on_refusal`)."""
        self.limit_refusals.labels(limit).inc()

    def count_deliveries(self, deliverer: Any) -> CountedDeliverer:
        """``deliverer`` with each attempt's outcome counted (`delivery_attempt`)."""
        return CountedDeliverer(deliverer, self)

    def delivery_attempt(self, outcome: str, seconds: float | None = None) -> None:
        """A delivery worker tried a message: ``delivered``, ``retry``, ``failed`` or ``dead``."""
        self.delivery_attempts.labels(outcome).inc()
        if seconds is not None:
            self.delivery_seconds.observe(seconds)

    async def refresh(self) -> None:
        """Read the queues' stats (a failing or slow queue keeps its last values)."""
        for name, queue in self._queues.items():
            try:
                stats = await asyncio.wait_for(queue.stats(), _STATS_TIMEOUT)
            except Exception as error:
                logger.warning("metrics: cannot read the stats of queue %s: %s", name, error)
                continue
            self.queue_messages.labels(name).set(stats.queued)
            self.queue_dead.labels(name).set(stats.dead)
            self.queue_bytes.labels(name).set(stats.size)
            oldest = stats.oldest
            self.queue_oldest_age.labels(name).set(max(0.0, time.time() - oldest) if oldest else 0.0)

    async def render(self) -> bytes:
        """The metrics in Prometheus' text format, queues refreshed first."""
        await self.refresh()
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ wrappers

    async def _timed(self, name: str, handler: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return await _call(handler, *args)
        finally:
            self.handler_seconds.labels(name).observe(time.perf_counter() - started)

    def _envelope_handler(self, name: str, command: str, inner: Callable[..., Any] | None) -> Callable[..., Any]:
        async def handler(address: Any, session: Session) -> Any:
            if inner is None:
                return None
            try:
                result = await self._timed(name, inner, address, session)
            except SMTPError as error:
                self.commands_refused.labels(command, str(error.code)).inc()
                raise
            except Exception:
                self.commands_refused.labels(command, "451").inc()
                raise
            if isinstance(result, SMTPError):
                self.commands_refused.labels(command, str(result.code)).inc()
            return result

        handler.__name__ = name
        return handler

    def _auth_handler(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        async def on_auth(auth: Any, session: Session) -> Any:
            try:
                result = await self._timed("on_auth", inner, auth, session)
            except Exception:
                self.auth_failures.inc()
                raise
            if isinstance(result, AuthResult):
                self.auth_successes.inc()
            else:
                self.auth_failures.inc()
            return result

        return on_auth

    def _data_handler(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        """Time and count on_data; keep it async or plain, as the server treats them apart."""

        def accepted(stream: Any, session: Session, result: Any) -> Any:
            if isinstance(result, SMTPError):
                self.messages_refused.labels(str(result.code)).inc()
            else:
                self.messages_accepted.inc()
                self.message_bytes.inc(getattr(stream, "byte_length", 0))
                setattr(session, _OUTCOME, "message")
            return result

        def refused(error: BaseException) -> None:
            if isinstance(error, SMTPError):
                code = str(error.code)
            elif isinstance(error, MessageTooLarge):  # the server answers 552 5.3.4 for it
                code = "552"
            elif isinstance(error, DataStreamError):
                code = "incomplete"
            elif isinstance(error, Exception):
                code = "451"
            else:
                return
            self.messages_refused.labels(code).inc()

        if inspect.iscoroutinefunction(inner) or inspect.iscoroutinefunction(getattr(inner, "__call__", None)):  # noqa: B004

            async def on_data(stream: Any, session: Session) -> Any:
                started = time.perf_counter()
                try:
                    result = await inner(stream, session)
                except BaseException as error:
                    refused(error)
                    raise
                finally:
                    self.handler_seconds.labels("on_data").observe(time.perf_counter() - started)
                return accepted(stream, session, result)

            return on_data

        def on_data_plain(stream: Any, session: Session) -> Any:
            started = time.perf_counter()
            try:
                result = inner(stream, session)
            except BaseException as error:
                refused(error)
                raise
            finally:
                self.handler_seconds.labels("on_data").observe(time.perf_counter() - started)
            if inspect.isawaitable(result):  # a plain function that returned a coroutine
                return _finish(result, stream, session)
            return accepted(stream, session, result)

        async def _finish(pending: Any, stream: Any, session: Session) -> Any:
            try:
                result = await pending
            except BaseException as error:
                refused(error)
                raise
            return accepted(stream, session, result)

        return on_data_plain

    def _on_error(self, error: BaseException, session: Any = None) -> None:
        if isinstance(error, (ssl.SSLError, asyncio.TimeoutError)):
            self.tls_failures.inc()
        else:
            self.errors.labels(type(error).__name__).inc()


class CountedDeliverer:
    """A deliverer whose attempts and outcomes are counted in `Metrics`; ``describe``,
    ``start`` and ``close`` go to the deliverer it wraps."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def describe(self) -> str:
        describe = getattr(self.inner, "describe", None)
        return str(describe()) if callable(describe) else type(self.inner).__name__

    async def start(self) -> None:
        start = getattr(self.inner, "start", None)
        if start is not None:
            await start()

    async def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            await close()

    async def __call__(self, message: Any) -> Any:
        from .queue.base import Delivered, Failed, Retry

        started = time.perf_counter()
        try:
            result = await self.inner(message)
        except Exception:
            self.metrics.delivery_attempt("retry", time.perf_counter() - started)
            raise
        outcomes = [result] if isinstance(result, (Delivered, Retry, Failed)) else list(result.values())
        if any(isinstance(outcome, Failed) for outcome in outcomes):
            kind = "failed"
        elif outcomes and all(isinstance(outcome, Delivered) for outcome in outcomes):
            kind = "delivered"
        else:
            kind = "retry"
        self.metrics.delivery_attempt(kind, time.perf_counter() - started)
        return result
