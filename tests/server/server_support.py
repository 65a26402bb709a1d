"""Helpers for the real-server tests: waiting, running coroutines on the server's loop,
recording handler calls across threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, message: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.01)


def on_server_loop(running: Any, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    """Run ``coro`` on the ServerThread's event loop and return its result."""
    return asyncio.run_coroutine_threadsafe(coro, running.loop).result(timeout)


def start_close(running: Any) -> Any:
    """Call ``server.close()`` on the server's loop without waiting; returns the future."""
    return asyncio.run_coroutine_threadsafe(running.server.close(), running.loop)


def ehlo(client: Any, name: str = "client.test") -> list[str]:
    """EHLO on a RawClient after reading the greeting; the capability lines."""
    code, text = client.reply()
    assert code == 220, text
    code, text = client.command(f"EHLO {name}")
    assert code == 250, text
    return text.split("\n")


def envelope(client: Any, sender: str = "a@example.com", *rcpts: str) -> None:
    """Greeting, EHLO, MAIL, RCPT on a RawClient; every reply must succeed."""
    ehlo(client)
    assert client.command(f"MAIL FROM:<{sender}>")[0] == 250
    for rcpt in rcpts or ("b@example.com",):
        assert client.command(f"RCPT TO:<{rcpt}>")[0] == 250


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
        wait_until(lambda: len(self) >= count, timeout, f"{count} records (got {len(self)})")
        with self._lock:
            return list(self.items)
