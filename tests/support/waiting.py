"""Waiting for something to happen in another thread, bounded in time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def wait_until(
    condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition", *, step: float = 0.01
) -> Any:
    """Poll ``condition`` until it is true and return its value; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class Recorder:
    """Thread-safe list of what handlers saw."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._lock = threading.Lock()

    def add(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)

    def __len__(self) -> int:
        with self._lock:
            return len(self.items)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        """The items once there are at least ``count`` of them."""
        wait_until(lambda: len(self) >= count, timeout, f"{count} records (got {len(self)})")
        with self._lock:
            return list(self.items)
