"""The session task, and running a piece of its work from a transport callback.

A read callback that completes a message can run on_data's first step itself instead of
waking the session task (one event-loop turn saved per message). The handler must not be
able to tell: the work runs *as* the task (``asyncio.current_task()``) and in the task's
own context, so the task is created with a context kept for that purpose. This needs
asyncio's bookkeeping of the current task, ``create_task(context=)`` and
``asyncio.timeout`` (Python 3.11); without them the task does all the work itself.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any, Final, cast

__all__ = ["SessionTask", "CALLBACKS_CAN_STEP_IN"]

_enter_task: Final[Callable[[Any, Any], None] | None] = getattr(asyncio.tasks, "_enter_task", None)
_leave_task: Final[Callable[[Any, Any], None] | None] = getattr(asyncio.tasks, "_leave_task", None)
CALLBACKS_CAN_STEP_IN: Final = _enter_task is not None and _leave_task is not None and hasattr(asyncio, "timeout")


class SessionTask:
    """A connection's task, with the context that callbacks enter to act as it."""

    __slots__ = ("task", "_loop", "_context")

    def __init__(self, loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, None]) -> None:
        self._loop = loop
        self._context: contextvars.Context | None = None
        if CALLBACKS_CAN_STEP_IN and loop.get_task_factory() is None:
            self._context = contextvars.copy_context()
            self.task: asyncio.Task[None] = cast(Any, loop).create_task(coroutine, context=self._context)
        else:
            self.task = loop.create_task(coroutine)

    def step_in(self, function: Callable[..., bool], *args: Any) -> bool:
        """Call ``function(*args)`` as the task, in its context, from a callback while the
        task waits. False without calling it where that cannot be done (then the task must
        do the work itself)."""
        context = self._context
        if context is None or _enter_task is None or _leave_task is None:
            return False
        try:
            _enter_task(self._loop, self.task)
        except RuntimeError:  # called from inside a task (not a transport callback)
            return False
        try:
            return bool(context.run(function, *args))
        finally:
            _leave_task(self._loop, self.task)
