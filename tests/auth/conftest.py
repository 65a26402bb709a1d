"""AUTH fixtures: an on_auth handler with known users, a recorder of delivered messages,
a TLS certificate for mx.test made with trustme, and a server factory with AUTH on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from auth_support import ALL_METHODS, Authenticator


class Mailbox:
    """on_data that keeps the envelope, user and transmission type of each message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def on_data(self, stream: Any, session: Any) -> None:
        body = await stream.read()
        self.messages.append(
            {
                "envelope": session.envelope,
                "user": session.user,
                "transmission_type": session.transmission_type,
                "body": body,
            }
        )

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages, got {len(self.messages)}")
            time.sleep(0.01)
        return self.messages


@pytest.fixture
def authenticator() -> Authenticator:
    return Authenticator()


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def auth_server(
    start_server: Callable[..., Any], authenticator: Authenticator, mailbox: Mailbox, mx_pair: dict[str, bytes]
) -> Callable[..., Any]:
    """start_server with on_auth=authenticator, every method, no failure delay, a known
    certificate; options override these."""

    def start(**options: Any) -> Any:
        options.setdefault("on_auth", authenticator)
        options.setdefault("on_data", mailbox.on_data)
        options.setdefault("auth_methods", ALL_METHODS)
        options.setdefault("auth_failure_delay", 0)
        for name, value in mx_pair.items():
            options.setdefault(name, value)
        return start_server(**options)

    return start


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog
