"""The ``smtpgate_cli`` fixture: the command in a subprocess, always killed at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_support import Command

from support import free_port


@pytest.fixture
def smtpgate_cli(tmp_path: Path) -> Iterator[Callable[..., Command]]:
    """``smtpgate_cli(*args)`` starts the command in ``tmp_path`` on a free port (unless
    the arguments choose the address) and waits until it listens."""
    started: list[Command] = []

    def start(*args: str, wait: bool = True, marker: str = "Ctrl-C to stop") -> Command:
        arguments = list(args)
        if "--port" in arguments:
            port = int(arguments[arguments.index("--port") + 1])
        else:
            port = free_port()
            if "--listen" not in arguments:
                arguments = ["--port", str(port), *arguments]
        command = Command(arguments, tmp_path, port)
        started.append(command)
        if wait:
            command.wait_listening(marker)
        return command

    yield start
    for command in started:
        command.kill()
