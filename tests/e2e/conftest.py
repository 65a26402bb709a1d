"""Fixtures for the end-to-end tests of the integrated command (see e2e_support)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_support import ZONES, Consumer, Gate, KnotServer, Receiver, RedisProcess, ThreadedReceiver, knotd_path, zone


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Callable[..., Gate]]:
    """``gate(*args, http=True, metrics=False)`` starts the command; killed at the end."""
    started: list[Gate] = []

    def start(*args: str, http: bool = True, metrics: bool = False, cwd: Path | None = None) -> Gate:
        folder = cwd or tmp_path / f"gate{len(started)}"
        folder.mkdir(exist_ok=True)
        running = Gate(folder, list(args), http=http, metrics=metrics)
        started.append(running)
        return running.start()

    yield start
    for running in started:
        running.kill()


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[Callable[..., Consumer]]:
    """``consumer(*args)`` starts ``smtpgate deliver ARGS``; killed at the end."""
    started: list[Consumer] = []

    def start(*args: str) -> Consumer:
        folder = tmp_path / f"consumer{len(started)}"
        folder.mkdir()
        running = Consumer(folder, list(args))
        started.append(running)
        running.start()
        return running

    yield start
    for running in started:
        running.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server on loopback (persistence on), stopped at the end."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/test installs it)")
    server = RedisProcess(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 that answers 200 to every POST on ``/hook``."""
    with ThreadedReceiver(["200"]) as receiver:
        yield receiver


@pytest.fixture(scope="session")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    """Knot DNS with an SPF and a DMARC record for ``ok.test``."""
    if knotd_path() is None:
        pytest.skip("knotd is not installed (scripts/test installs Debian's knot)")
    server = KnotServer(tmp_path_factory.mktemp("knot"), {origin: zone(origin, text) for origin, text in ZONES.items()})
    server.start()
    yield server
    server.stop()
