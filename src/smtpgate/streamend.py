"""The awaitable that ends an ``async for`` over a body stream. Interpreted on purpose
(not in setup.py's compiled list).

A compiled ``async def __anext__`` that raises ``StopAsyncIteration`` pays for a made-up
traceback frame, about 2,000 instructions, at the end of every message read with
``async for``. An exhausted async generator's ``__anext__`` gives an awaitable that
raises ``StopAsyncIteration`` from C, with no frame at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

__all__ = ["end_of_stream"]


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # (an async generator that ends at once)


_EXHAUSTED: Any = _nothing()
try:
    _EXHAUSTED.__anext__().send(None)
except StopAsyncIteration:
    pass


def end_of_stream() -> Awaitable[bytes]:
    """An awaitable that raises ``StopAsyncIteration``."""
    result: Awaitable[bytes] = _EXHAUSTED.__anext__()
    return result
