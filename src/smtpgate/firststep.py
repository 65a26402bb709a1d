"""A coroutine's first step, taken by hand, and the rest of it, handed to a task.

Pure Python on purpose (not in setup.py's compiled list): a coroutine that returns at once
ends its step with ``StopIteration``, which a compiled function catches at the cost of a
made-up traceback frame, several times what the interpreter's ``except`` costs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["first_step", "Suspended"]

_NOTHING = object()


def first_step(coroutine: Any) -> tuple[bool, Any]:
    """Run ``coroutine`` up to its first suspension: ``(True, result)`` if it returned,
    ``(False, what it yielded)`` if it suspended. What it raises goes through."""
    try:
        return False, coroutine.send(None)
    except StopIteration as stop:
        return True, stop.value


class Suspended:
    """The rest of a coroutine that `first_step` left suspended at ``step``.

    Awaiting it hands ``step`` (the future the coroutine waits on) to the awaiting task and
    then goes on with the coroutine, exactly as if the task had awaited it from its start:
    results, exceptions, cancellation and ``close`` all go through. ``done`` is called
    once the coroutine has ended, however it ended.
    """

    __slots__ = ("_coroutine", "_step", "_done")

    def __init__(self, coroutine: Any, step: Any, done: Callable[[], None]) -> None:
        self._coroutine = coroutine
        self._step = step
        self._done = done

    def __await__(self) -> Suspended:
        return self

    def __iter__(self) -> Suspended:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        step = self._step
        if step is not _NOTHING:
            self._step = _NOTHING
            return step
        try:
            return self._coroutine.send(value)
        except BaseException:  # StopIteration (the coroutine returned) included
            self._done()
            raise

    def throw(self, kind: Any, value: Any = None, traceback: Any = None) -> Any:
        self._step = _NOTHING
        error = value if value is not None else kind
        if traceback is not None and isinstance(error, BaseException):
            error = error.with_traceback(traceback)
        try:
            return self._coroutine.throw(error)
        except BaseException:
            self._done()
            raise

    def close(self) -> None:
        try:
            self._coroutine.close()
        finally:
            self._done()
