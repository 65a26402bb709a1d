"""Helpers for the real-server tests: waiting, running coroutines on the server's loop,
recording handler calls across threads."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from support import greet

__all__ = ["on_server_loop", "start_close", "ehlo", "envelope"]


def on_server_loop(running: Any, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    """Run ``coro`` on the ServerThread's event loop and return its result."""
    return asyncio.run_coroutine_threadsafe(coro, running.loop).result(timeout)


def start_close(running: Any) -> Any:
    """Call ``server.close()`` on the server's loop without waiting; returns the future."""
    return asyncio.run_coroutine_threadsafe(running.server.close(), running.loop)


def ehlo(client: Any, name: str = "client.test") -> list[str]:
    """EHLO on a RawClient after reading the greeting; the capability lines."""
    return greet(client, f"EHLO {name}")


def envelope(client: Any, sender: str = "a@example.com", *rcpts: str) -> None:
    """Greeting, EHLO, MAIL, RCPT on a RawClient; every reply must succeed."""
    ehlo(client)
    assert client.command(f"MAIL FROM:<{sender}>")[0] == 250
    for rcpt in rcpts or ("b@example.com",):
        assert client.command(f"RCPT TO:<{rcpt}>")[0] == 250
