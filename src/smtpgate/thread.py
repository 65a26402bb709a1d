"""ServerThread: an SMTPServer on its own event loop in a background thread.

For synchronous code and tests (aiosmtpd users know this as ``Controller``)::

    with ServerThread(SMTPServer(on_data=on_data)) as running:
        smtplib.SMTP(running.host, running.port).sendmail(...)
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .options import ServerSettings
from .server import SMTPServer, check_port

if sys.version_info >= (3, 11):
    from typing import Unpack
elif TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ServerThread"]


class ServerThread:
    """Run ``server`` (or ``SMTPServer(**options)``) in a daemon thread.

    ``port=0`` (the default) picks a free port; ``start()`` returns once the server is
    listening and raises what ``listen()`` raised. ``loop_factory`` makes the thread's
    event loop (default: ``asyncio.new_event_loop``; e.g. ``uvloop.new_event_loop``).
    """

    def __init__(
        self,
        server: SMTPServer | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        **options: Unpack[ServerSettings],
    ) -> None:
        if server is not None and options:
            raise TypeError("give either a server or options, not both")
        self.port = check_port(port)
        self.server = server if server is not None else SMTPServer(**options)
        self.host = host
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_factory = loop_factory or asyncio.new_event_loop
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 10.0) -> ServerThread:
        """Start the thread and wait (up to ``timeout`` seconds) until it listens."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._main, name="smtpgate-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"SMTP server did not start within {timeout} s")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Close the server (gracefully, within its ``close_timeout``) and end the thread."""
        loop, stop, thread = self.loop, self._stop, self._thread
        if loop is None or stop is None or thread is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None

    def _main(self) -> None:
        loop = self._loop_factory()
        self.loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.listen(self.port, host=self.host)
        except BaseException as error:
            self._error = error
            self._ready.set()
            return
        self.port = self.server.port
        self._ready.set()
        await self._stop.wait()
        await self.server.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
