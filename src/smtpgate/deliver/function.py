"""Wrap a plain Python function (sync or async) as a deliverer."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ..queue.base import Delivered, DeliveryResult, Failed, QueuedMessage, Retry

__all__ = ["FunctionDeliverer", "PermanentFailure"]


class PermanentFailure(Exception):
    """Raise it from a wrapped function to fail the message for good (no retry)."""


class FunctionDeliverer:
    """Calls ``function(message)``; a plain function runs in a thread.

    The function returns ``None`` (delivered to every pending recipient), an outcome
    (`Delivered`, `Retry`, `Failed`) or a mapping of recipient to outcome. Raising
    `PermanentFailure` fails the message; any other exception retries it."""

    def __init__(self, function: Callable[[QueuedMessage], Any], name: str | None = None) -> None:
        self.function = function
        self.name: str = name or str(getattr(function, "__qualname__", repr(function)))

    def describe(self) -> str:
        """The function's name."""
        return self.name

    async def __call__(self, message: QueuedMessage) -> DeliveryResult:
        try:
            if inspect.iscoroutinefunction(self.function):
                result = await self.function(message)
            else:
                result = await asyncio.to_thread(self.function, message)
                if inspect.isawaitable(result):
                    result = await result
        except PermanentFailure as error:
            return Failed(str(error) or "permanent failure")
        except Exception as error:
            return Retry(f"{type(error).__name__}: {error}")
        if result is None:
            return Delivered()
        if isinstance(result, (Delivered, Retry, Failed, Mapping)):
            return result
        raise TypeError(f"a deliverer function returned {type(result).__name__}, not an outcome or None")
