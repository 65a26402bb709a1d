"""What a handler's call came to: one translation for every handler.

A handler accepts by returning, refuses by raising (or returning) an `SMTPError`, and
fails by timing out or raising anything else. `outcome_of` runs one call and says which,
as a value; the connection decides what each means for its phase.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from types import CoroutineType
from typing import Any, Final

from .errors import SMTPError
from .lifecycle import Waiting
from .stream import DataStream, DataStreamError

__all__ = ["Outcome", "outcome_of", "INTERNAL_ERROR", "HANDLER_TIMEOUT", "AUTH_FAILED"]

_INPUT: Final = Waiting.INPUT
INTERNAL_ERROR: Final = SMTPError(451, "Error: internal server error", enhanced="4.3.0")
HANDLER_TIMEOUT: Final = SMTPError(451, "Error: timeout while processing, try again later", enhanced="4.3.0")
AUTH_FAILED: Final = SMTPError(535, "Error: authentication failed", enhanced="5.7.8")


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
                result = await (result if timeout is None else asyncio.wait_for(result, timeout))
            finally:
                wait_on(_INPUT)
    # (one name per clause: compiled, a name keeps the type of its first binding)
    except SMTPError as refusal:
        return Outcome(error=refusal)
    except asyncio.TimeoutError:
        return Outcome(error=HANDLER_TIMEOUT, timed_out=True)
    except DataStreamError as stream_error:
        if stream is not None and stream.error is stream_error:
            return Outcome(body_refused=stream_error)
        return Outcome(error=INTERNAL_ERROR, failure=stream_error)
    except Exception as failure:
        return Outcome(error=INTERNAL_ERROR, failure=failure)
    return Outcome(result, result if isinstance(result, SMTPError) else None)
