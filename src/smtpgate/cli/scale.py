"""The command's scale-out parts: shared limits, metrics and health over HTTP, and the
Redis stream sink's flags. `ScaleParts` is built from `Settings`; it wraps the server's
handlers and runs beside the server. Its extras (redis-py, prometheus-client, aiohttp)
are imported only when a flag asks for them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..limits import Limiter, LimitPolicy, RedisBackend, parse_rate
from ..queue.base import MessageQueue
from ..sinks import Sink
from .config import Settings

__all__ = ["ScaleParts", "configure_sinks", "limit_policy"]

logger = logging.getLogger("smtpgate.cli")


def limit_policy(settings: Settings) -> LimitPolicy:
    """The limits the flags ask for (all zero when none is given)."""
    s = settings
    return LimitPolicy(
        connections=s.limit_connections,
        connection_rate=parse_rate(s.limit_connection_rate or "0"),
        messages=parse_rate(s.limit_messages or "0"),
        recipients=parse_rate(s.limit_recipients or "0"),
        trusted=tuple(s.limit_trusted),
    )


def configure_sinks(settings: Settings, sinks: Sequence[Sink]) -> None:
    """Apply ``--redis-replicas``, ``--redis-stream`` and ``--redis-password-file`` to the
    Redis stream sinks (over their URL's parameters)."""
    for sink in sinks:
        configure = getattr(sink, "configure", None)
        if sink.kind in ("redis", "rediss") and configure is not None:
            configure(
                replicas=settings.redis_replicas,
                stream=settings.redis_stream,
                password_file=settings.redis_password_file,
            )


def _new_metrics(settings: Settings) -> Any:
    """Metrics for ``--metrics`` (prometheus-client required) or ``--http`` (when it is
    installed; without it ``--http`` serves ``/livez`` and ``/readyz`` only)."""
    if settings.metrics is None and settings.http is None:
        return None
    try:
        from ..metrics import Metrics
    except ImportError as error:
        if settings.metrics is not None:
            raise ValueError(f"--metrics needs prometheus-client (pip install 'smtpgate[scale]'): {error}") from None
        return None
    return Metrics()


class ScaleParts:
    """Limits, metrics and the health endpoint of one serving process."""

    def __init__(self, settings: Settings, sinks: Sequence[Sink]) -> None:
        self.settings = settings
        policy = limit_policy(settings)
        self.limiter: Limiter | None = None
        if policy.active:
            backend = None
            if settings.limits_redis:
                backend = RedisBackend(
                    settings.limits_redis, lease=policy.lease, password_file=settings.redis_password_file
                )
            self.limiter = Limiter(policy, backend)
        self.metrics: Any = _new_metrics(settings)
        if self.metrics is not None:
            if self.limiter is not None:
                self.limiter.on_refusal.append(self.metrics.count_refusal)
            for sink in sinks:
                if isinstance(sink, MessageQueue):
                    self.metrics.add_queue(sink.describe(), sink)
        self._runner: Any = None
        self._readiness: Any = None

    def http_routes(self, server: Any, sinks: Sequence[Sink]) -> list[Any]:
        """``/livez``, ``/readyz`` and ``/metrics`` for the ``--http`` server (aiohttp)."""
        from ..health import health_routes

        return health_routes(self._ready(server, sinks), self.metrics)

    def _ready(self, server: Any, sinks: Sequence[Sink]) -> Any:
        if self._readiness is None:
            from ..health import Readiness, sink_check

            self._readiness = Readiness(server, [sink_check(sink) for sink in sinks])
        return self._readiness

    def wrap(self, options: dict[str, Any]) -> dict[str, Any]:
        """The server options with the limits (inside) and the metrics (outside) wrapped in."""
        if self.limiter is not None:
            options = self.limiter.wrap(options)
        if self.metrics is not None:
            options = self.metrics.wrap(options)
        return options

    async def start(self, server: Any, sinks: Sequence[Sink]) -> None:
        """Connect the limits' backend (unreachable: a warning, the limits fail open until
        it answers) and serve ``--metrics``; raises ``OSError`` if that port is taken."""
        if self.limiter is not None:
            try:
                await self.limiter.start()
            except Exception as error:
                logger.warning(
                    "limits: %s unreachable (%s); not limiting until it answers", self.settings.limits_redis, error
                )
        if self.metrics is not None:
            self.metrics.attach(server)
        if self.settings.metrics is not None:
            from ..health import health_routes, serve_health

            host, port = self.settings.metrics
            self._runner = await serve_health(host, port, health_routes(self._ready(server, sinks), self.metrics))

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.limiter is not None:
            await self.limiter.close()
