"""``smtpgate queue --queue redis://...``: the queue commands on the Redis stream."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["run_on_stream"]


async def run_on_stream(args: argparse.Namespace, act: Callable[[Any, argparse.Namespace], Awaitable[int]]) -> int:
    """Run ``act`` on the stream named by ``args.queue``; Redis errors are one line."""
    from ..queue.redis import RedisStreamQueue

    try:
        queue = RedisStreamQueue(args.queue)
    except ValueError as error:
        print(f"smtpgate queue: error: {error}", file=sys.stderr)
        return 1
    try:
        return await act(queue, args)
    except Exception as error:
        print(f"smtpgate queue: error: {queue.describe()}: {error}", file=sys.stderr)
        return 1
    finally:
        await queue.close()
