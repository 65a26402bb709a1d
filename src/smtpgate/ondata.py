"""One message on its way to ``on_data``: the stream, and the handler's run."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Any, Final

from .firststep import Suspended, first_step
from .session import Session
from .stream import DataStream, DataStreamError

__all__ = ["OnDataCall", "SUSPENDED"]

SUSPENDED: Final = object()  # what `OnDataCall.run_now` returns for a handler that suspended


class OnDataCall:
    """The stream of one message and the ``on_data`` call that reads it.

    A plain handler runs once the message is in (the stream then buffers it whole). An
    async one is *deferred*: it runs in the session task at the end of the message, unless
    it must read while the rest arrives (the body outgrew the stream's buffer) or must see
    an abort, in which case `start` runs it beside the session as ``task``. Most messages
    then cost no task of their own. `run_now` takes a deferred handler's first step at
    once, so that one which does not suspend is answered without waking the session task.
    """

    __slots__ = ("stream", "task", "_handler", "_session", "_deferred", "_rest")

    def __init__(self, handler: Callable[..., Any], is_async: bool, session: Session, stream: DataStream) -> None:
        self.stream = stream
        self.task: asyncio.Future[Any] | None = None
        self._handler = handler
        self._session = session
        self._deferred = is_async
        self._rest: Awaitable[Any] | None = None  # the rest of a handler that run_now left suspended

    @property
    def deferred(self) -> bool:
        """The handler has not been called yet (and will be at the end of the message)."""
        return self._deferred

    def start(self) -> None:
        """Run the handler now, beside the session (big body, or an abort); or the rest of
        one that `run_now` left suspended."""
        if self._deferred:
            self._deferred = False
            self.task = asyncio.ensure_future(self.run())
        elif self._rest is not None:
            rest, self._rest = self._rest, None
            self.task = asyncio.ensure_future(rest)

    def abort(self, reason: str) -> None:
        """The message will not be complete: the handler's next read raises."""
        self.stream.abort(DataStreamError(reason))
        self.start()  # a deferred handler still sees the broken message

    async def wind_down(self, reason: str, grace: float) -> BaseException | None:
        """The session is over: a message not received in full is aborted (the handler's
        next read raises), a handler still running gets ``grace`` seconds to finish, then
        is cancelled and gets as long again. What it raised, if anything."""
        self.abort(reason)
        task = self.task
        if task is None:
            return None
        if not task.done():
            await asyncio.wait({task}, timeout=grace)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=grace)
        if task.done() and not task.cancelled():
            return task.exception()
        return None

    def verdict(self) -> Any:
        """What to await for the handler's result at the end of the message."""
        self._deferred = False
        if self.task is not None:
            return self.task
        rest = self._rest
        if rest is not None:
            self._rest = None
            return rest
        return self.run()

    def run_now(self) -> Any:
        """Call a deferred handler now (the stream has ended), up to its first suspension.

        Returns what it returned, or raises what it raised (an ``Exception``), as `run`
        would; or `SUSPENDED`, and `verdict` is then the rest of the call. The caller runs
        this as the session task, in its context: the handler cannot tell the difference.
        """
        self._deferred = False
        stream = self.stream
        done = True
        try:
            result = self._handler(stream, self._session)
            if type(result) is CoroutineType:
                returned, value = first_step(result)
                if returned:
                    return value
                self._rest = Suspended(result, value, stream.discard)
                done = False
                return SUSPENDED
            if inspect.isawaitable(result):  # not a coroutine: awaited by the session task
                self._rest = _rest_of(result, stream)
                done = False
                return SUSPENDED
            return result
        except Exception:
            raise
        except BaseException as error:  # cancellation, exit: raised in the session task
            self._rest = _reraise(error)
            return SUSPENDED
        finally:
            if done:
                stream.discard()

    async def run(self) -> Any:
        try:
            result = self._handler(self.stream, self._session)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            self.stream.discard()  # whatever the handler left unread is drained


async def _rest_of(awaitable: Awaitable[Any], stream: DataStream) -> Any:
    try:
        return await awaitable
    finally:
        stream.discard()


async def _reraise(error: BaseException) -> Any:
    raise error
