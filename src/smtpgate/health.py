"""Health and metrics over HTTP (aiohttp, the ``scale`` extra): ``/livez``, ``/readyz`` and
``/metrics``.

* ``/livez``: 200 while the event loop answers.
* ``/readyz``: 200 when the server listens and every readiness check passes (the sinks and
  the queue can be written), else 503 with one line per failing check: what a load
  balancer asks before it sends mail.
* ``/metrics``: `smtpgate.metrics.Metrics` in Prometheus' text format.

`health_routes` gives the routes to add to any aiohttp application (the command's HTTP
server); `serve_health` runs them on their own (``--metrics HOST:PORT``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from .metrics import CONTENT_TYPE, Metrics

__all__ = ["Readiness", "ReadinessCheck", "health_routes", "serve_health", "sink_check"]

logger = logging.getLogger("smtpgate.health")

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""An async check: None when ready, else a short reason."""

_CHECK_TIMEOUT = 3.0


class Readiness:
    """What ``/readyz`` checks: an object with a ``listening`` attribute (an SMTPServer),
    and any number of `ReadinessCheck` callables."""

    def __init__(self, server: Any = None, checks: Sequence[ReadinessCheck] = ()) -> None:
        self.server = server
        self.checks: list[ReadinessCheck] = list(checks)

    async def problems(self) -> list[str]:
        """Why the receiver is not ready (empty when it is)."""
        found: list[str] = []
        if self.server is not None and not getattr(self.server, "listening", False):
            found.append("not listening")
        for check in self.checks:
            name = getattr(check, "__name__", "check")
            try:
                reason = await asyncio.wait_for(check(), _CHECK_TIMEOUT)
            except asyncio.TimeoutError:
                reason = f"{name}: no answer within {_CHECK_TIMEOUT:g} s"
            except Exception as error:
                reason = f"{name}: {error}"
            if reason:
                found.append(reason)
        return found


def sink_check(sink: Any) -> ReadinessCheck:
    """A readiness check for a sink: its own ``check()`` coroutine when it has one (the
    Redis stream pings and checks the primary accepts writes), else its folder or file
    must be writable."""
    own = getattr(sink, "check", None)

    async def check() -> str | None:
        if own is not None:
            result = own()
            if inspect.isawaitable(result):
                result = await result
            return str(result) if result else None
        path = getattr(sink, "path", "")
        if not path:
            return None
        if not os.path.exists(path) or not os.access(path, os.W_OK):
            return f"{sink.describe()}: not writable"
        return None

    check.__name__ = f"sink {sink.describe()}"
    return check


def health_routes(readiness: Readiness, metrics: Metrics | None = None) -> list[web.RouteDef]:
    """``/livez``, ``/readyz`` and (with ``metrics``) ``/metrics``."""

    async def livez(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        problems = await readiness.problems()
        if problems:
            return web.Response(status=503, text="".join(f"{p}\n" for p in problems))
        return web.Response(text="ready\n")

    routes = [web.get("/livez", livez), web.get("/readyz", readyz)]
    if metrics is not None:

        async def metrics_page(request: web.Request) -> web.Response:
            body = await metrics.render()
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

        routes.append(web.get("/metrics", metrics_page))
    return routes


async def serve_health(host: str, port: int, routes: Sequence[web.RouteDef]) -> web.AppRunner:
    """Serve ``routes`` on ``host:port`` (``port`` 0: a free one, see the runner's
    ``addresses``); stop it with ``await runner.cleanup()``. Raises ``OSError``."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    logger.info("health and metrics on http://%s", ", http://".join(_address(a) for a in runner.addresses))
    return runner


def _address(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
