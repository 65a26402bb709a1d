"""Proxy fixtures: a real HAProxy in front of a test server, and smtpgate's log records."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from proxy_support import HAProxy, haproxy_config, require_haproxy

from support import free_port


@pytest.fixture
def smtpgate_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Records of the ``smtpgate`` logger from DEBUG up (server threads log there too)."""
    caplog.set_level(logging.DEBUG, logger="smtpgate")
    return caplog


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Callable[..., HAProxy]]:
    """``haproxy([backend_port, ...], server_options="send-proxy-v2")`` starts HAProxy in TCP
    mode on a free loopback port, in front of the given smtpgate ports; always killed at the end."""
    require_haproxy()
    started: list[HAProxy] = []

    def start(backends: list[int], server_options: str = "send-proxy-v2", backend_options: str = "") -> HAProxy:
        port = free_port()
        folder = tmp_path / f"haproxy{len(started)}"
        folder.mkdir()
        proxy = HAProxy(folder, haproxy_config(port, backends, server_options, backend_options), port)
        started.append(proxy)
        return proxy.start()

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()
