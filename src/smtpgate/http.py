"""One HTTP server (aiohttp) in smtpgate's own event loop; parts add their routes.

``HTTPServer(host, port, routes, middlewares)`` serves the inbox API and UI, and any
other routes (health, metrics) other parts pass in. Needs the ``inbox`` extra (aiohttp);
only the parts that serve HTTP import this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

__all__ = ["HTTPServer", "MAX_REQUEST_LINE"]

MAX_REQUEST_LINE = 64 * 1024
"""The longest request line (method, URL) and header line accepted; longer ones get ``400``."""


class HTTPServer:
    """An aiohttp application on ``host:port`` (port 0: a free one, read `port`)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8025,
        routes: Iterable[web.RouteDef] = (),
        middlewares: Iterable[Any] = (),
        *,
        client_max_size: int = 4 * 1024 * 1024,
    ) -> None:
        self.host = host
        self.port = port
        self.app = web.Application(middlewares=list(middlewares), client_max_size=client_max_size)
        self.app.add_routes(list(routes))
        self._runner: web.AppRunner | None = None

    def add_routes(self, routes: Iterable[web.RouteDef]) -> None:
        """More routes (before `start`)."""
        self.app.add_routes(list(routes))

    async def start(self) -> None:
        """Listen; raises `OSError` when the address is taken."""
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            max_line_size=MAX_REQUEST_LINE,  # long search queries in the URL, as Go's server takes them
            max_field_size=MAX_REQUEST_LINE,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop listening and close open connections (websockets included)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
