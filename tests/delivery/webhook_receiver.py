"""An aiohttp webhook receiver for the tests: records requests, answers from a script."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
import time
from concurrent.futures import Future

from aiohttp import web


class Receiver:
    """An aiohttp app on 127.0.0.1 that records every request and answers with the next
    behaviour of its script (the last one repeats)."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.released = asyncio.Event()
        self.ok_ids: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((time.monotonic(), dict(request.headers), body))
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        if step == "timeout":
            await self.released.wait()  # longer than the client waits
            return web.Response(status=504)
        if step == "reset":
            sock = request.transport.get_extra_info("socket") if request.transport else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if step.startswith("429"):
            return web.Response(status=429, headers={"Retry-After": step.split(":")[1]}, text="slow down")
        if step.startswith("2"):
            self.ok_ids.append(request.headers.get("webhook-id", ""))
        return web.Response(status=int(step), text="ok" if step.startswith("2") else "no")

    def delivered_ids(self) -> set[str]:
        """The webhook IDs answered with a 2xx."""
        return set(self.ok_ids)

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> Receiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # aiohttp refuses over 1 MiB by default
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self.released.set()
        if self.runner is not None:
            await self.runner.cleanup()


class ThreadedReceiver:
    """A `Receiver` running in its own thread and event loop (for tests that run the
    command in a subprocess)."""

    def __init__(self, script: list[str]) -> None:
        self.receiver = Receiver(script)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        started: Future[Receiver] = asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop)
        return started.result(30)

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
