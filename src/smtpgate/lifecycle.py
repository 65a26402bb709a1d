"""The explicit state of a connection: where it is in its life, and what it waits on."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable

__all__ = ["Stage", "Waiting", "loop_clock"]


class Stage(enum.Enum):
    """Where a connection is in its life."""

    OPENING = "opening"  # accepted: reverse lookup, implicit TLS, on_connect; no greeting yet
    SERVING = "serving"  # the session loop runs
    ENDED = "ended"  # the transport is gone or aborted: nothing more is read or written


class Waiting(enum.Enum):
    """What the session task waits on; the idle timer only counts `INPUT`."""

    INPUT = "input"  # the client's turn
    HANDLER = "handler"  # a handler deciding (or the pause after a failed AUTH)
    ON_DATA = "on_data"  # on_data's verdict on a whole message (force_close cancels it)
    STREAM = "stream"  # on_data has enough unread body (backpressure)
    HANDSHAKE = "handshake"  # a TLS handshake (bounded by its own timeout)


def loop_clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """``loop.time`` for the idle timer: ``time.monotonic`` itself (a C call) when that is all
    the loop's own method would do, as on asyncio's loops."""
    if isinstance(loop, asyncio.BaseEventLoop) and type(loop).time is asyncio.BaseEventLoop.time:
        return time.monotonic
    return loop.time
