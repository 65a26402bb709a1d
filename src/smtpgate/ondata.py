"""One message on its way to ``on_data``: the stream, and the handler's run."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from .session import Session
from .stream import DataStream, DataStreamError

__all__ = ["OnDataCall"]


class OnDataCall:
    """The stream of one message and the ``on_data`` call that reads it.

    A plain handler runs once the message is in (the stream then buffers it whole). An
    async one is *deferred*: it runs in the session task at the end of the message, unless
    it must read while the rest arrives (the body outgrew the stream's buffer) or must see
    an abort, in which case `start` runs it beside the session as ``task``. Most messages
    then cost no task of their own.
    """

    __slots__ = ("stream", "task", "_handler", "_session", "_deferred")

    def __init__(self, handler: Callable[..., Any], is_async: bool, session: Session, stream: DataStream) -> None:
        self.stream = stream
        self.task: asyncio.Future[Any] | None = None
        self._handler = handler
        self._session = session
        self._deferred = is_async

    def start(self) -> None:
        """Run a deferred handler now, beside the session (big body, or an abort)."""
        if self._deferred:
            self._deferred = False
            self.task = asyncio.ensure_future(self.run())

    def abort(self, reason: str) -> None:
        """The message will not be complete: the handler's next read raises."""
        self.stream.abort(DataStreamError(reason))
        self.start()  # a deferred handler still sees the broken message

    def verdict(self) -> Any:
        """What to await for the handler's result at the end of the message."""
        self._deferred = False
        return self.task if self.task is not None else self.run()

    async def run(self) -> Any:
        try:
            result = self._handler(self.stream, self._session)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            self.stream.discard()  # whatever the handler left unread is drained
