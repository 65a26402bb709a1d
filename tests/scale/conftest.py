"""Fixtures of the scale tests: redis-server processes, servers on a background loop."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "cli"))

from cli_support import Command
from redis_support import RedisProcess

from support import free_port


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
def smtpgate_cli(tmp_path: Path) -> Iterator[Callable[..., Command]]:
    """``smtpgate_cli(*args, cwd=None)`` starts the command on a free port and waits until it
    listens; every one is killed at the end."""
    started: list[Command] = []

    def start(*args: str, cwd: Path | None = None, wait: bool = True, marker: str = "Ctrl-C to stop") -> Command:
        port = free_port()
        folder = cwd or tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        arguments = list(args) if args and args[0] == "deliver" else ["--port", str(port), *args]
        command = Command(arguments, folder, port)
        started.append(command)
        if wait:
            command.wait_listening(marker)
        return command

    yield start
    for command in started:
        command.kill()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisProcess]) -> RedisProcess:
    return redis_factory()
