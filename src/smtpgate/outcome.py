"""What a handler's call came to: one translation for every handler.

A handler accepts by returning, refuses by raising (or returning) an `SMTPError`, and
fails by timing out or raising anything else. `outcome_of` runs one call and says which,
as a value; the connection decides what each means for its phase.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import CoroutineType
from typing import Any, Final

from .errors import SMTPError
from .lifecycle import Waiting
from .stream import DataStream, DataStreamError

__all__ = [
    "Outcome",
    "outcome_of",
    "outcome_of_value",
    "outcome_of_failure",
    "INTERNAL_ERROR",
    "HANDLER_TIMEOUT",
    "AUTH_FAILED",
]

_INPUT: Final = Waiting.INPUT
INTERNAL_ERROR: Final = SMTPError(451, "Error: internal server error", enhanced="4.3.0")
HANDLER_TIMEOUT: Final = SMTPError(451, "Error: timeout while processing, try again later", enhanced="4.3.0")
AUTH_FAILED: Final = SMTPError(535, "Error: authentication failed", enhanced="5.7.8")

# asyncio.timeout (Python 3.11+) bounds a handler in the task that awaits it, so the handler
# runs in the session task whether or not handler_timeout is set; wait_for on 3.10 runs it
# in a task of its own.
_TIMEOUT: Final[Callable[[float], AbstractAsyncContextManager[Any]] | None] = getattr(asyncio, "timeout", None)


class Outcome:
    """One handler call, settled.

    ``error`` is the reply to refuse with (None: accepted, ``value`` is what it returned).
    ``failure`` is the exception of a handler that failed (``error`` is then the 451);
    ``timed_out`` says it ran past ``handler_timeout``; ``body_refused`` that the handler
    only passed on the stream's own refusal (e.g. `MessageTooLarge`).
    """

    __slots__ = ("value", "error", "failure", "timed_out", "body_refused")

    def __init__(
        self,
        value: Any = None,
        error: SMTPError | None = None,
        failure: BaseException | None = None,
        timed_out: bool = False,
        body_refused: DataStreamError | None = None,
    ) -> None:
        self.value = value
        self.error = error
        self.failure = failure
        self.timed_out = timed_out
        self.body_refused = body_refused

    @property
    def failed(self) -> bool:
        """The handler timed out or raised something other than an SMTPError."""
        return self.timed_out or self.failure is not None


async def outcome_of(
    call: Callable[[], Any],
    *,
    timeout: float | None,
    wait_on: Callable[[Waiting], None],
    waiting: Waiting = Waiting.HANDLER,
    stream: DataStream | None = None,
) -> Outcome:
    """Run ``call`` (a handler applied to its arguments, or a task already running) and
    settle it. An awaitable result is awaited for up to ``timeout`` seconds, with
    ``wait_on(waiting)`` before and ``wait_on(Waiting.INPUT)`` after. Cancellation goes
    through."""
    try:
        result = call()
        if type(result) is CoroutineType or inspect.isawaitable(result):  # the first test is the fast one
            wait_on(waiting)
            try:
                if timeout is None:
                    result = await result
                elif _TIMEOUT is not None:
                    async with _TIMEOUT(timeout):
                        result = await result
                else:
                    result = await asyncio.wait_for(result, timeout)
            finally:
                wait_on(_INPUT)
    except Exception as failure:
        return outcome_of_failure(failure, stream)
    return outcome_of_value(result)


def outcome_of_value(value: Any) -> Outcome:
    """A handler returned ``value`` (an `SMTPError` returned refuses, as one raised does)."""
    return Outcome(value, value if isinstance(value, SMTPError) else None)


def outcome_of_failure(error: Exception, stream: DataStream | None = None) -> Outcome:
    """A handler raised ``error``: a refusal, a timeout, the stream's own refusal of the body
    (``stream``'s error passed on), or a failure answered 451."""
    if isinstance(error, SMTPError):
        return Outcome(error=error)
    if isinstance(error, asyncio.TimeoutError):
        return Outcome(error=HANDLER_TIMEOUT, timed_out=True)
    if isinstance(error, DataStreamError) and stream is not None and stream.error is error:
        return Outcome(body_refused=error)
    return Outcome(error=INTERNAL_ERROR, failure=error)
