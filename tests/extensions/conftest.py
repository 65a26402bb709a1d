"""Extension and LMTP fixtures: a message recorder, a trustme certificate for mx.test,
and a server factory recording messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ext_support import Mailbox


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def server(start_server: Callable[..., Any], mailbox: Mailbox, mx_pair: dict[str, bytes]) -> Callable[..., Any]:
    """start_server with on_data=mailbox.on_data and the mx.test certificate."""

    def start(**options: Any) -> Any:
        options.setdefault("on_data", mailbox.on_data)
        for name, value in mx_pair.items():
            options.setdefault(name, value)
        return start_server(**options)

    return start
