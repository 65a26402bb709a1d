"""Fixtures of the scale tests: redis-server processes, servers on a background loop."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from redis_support import RedisProcess

T = TypeVar("T")


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisProcess]]:
    """``redis_factory(name, replica_of=None)`` starts a redis-server; all are stopped at the end."""
    started: list[RedisProcess] = []

    def start(name: str = "primary", replica_of: int | None = None) -> RedisProcess:
        process = RedisProcess(tmp_path / f"redis-{name}", replica_of=replica_of)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        try:
            process.resume()
        except (AssertionError, ProcessLookupError):
            pass
        process.stop()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisProcess]) -> RedisProcess:
    return redis_factory()


def run_in(loop: asyncio.AbstractEventLoop | None, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    """Run a coroutine on a ServerThread's loop and wait for its result."""
    assert loop is not None
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)
