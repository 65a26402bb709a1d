"""Fixtures for the verification tests: Knot DNS on loopback, started per test module."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from dnsserver import KnotServer, knotd_path


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[dict[str, str | None]], KnotServer]]:
    """``knot(zones)`` starts a Knot DNS server for the module; stopped when it ends."""
    if knotd_path() is None:
        pytest.skip("knotd is not installed (scripts/test installs Debian's knot)")
    servers: list[KnotServer] = []

    def start(zones: dict[str, str | None]) -> KnotServer:
        server = KnotServer(tmp_path_factory.mktemp("knot"), zones)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
