"""Fixtures of the inbox tests: the command's app with the inbox and its HTTP API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from inbox_support import AppThread


def pytest_configure(config: pytest.Config) -> None:
    """pytester for the plugin tests (loaded here: see tests/plugin/conftest.py)."""
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")


@pytest.fixture
def inbox_app_factory(tmp_path: Path) -> Iterator[Callable[..., AppThread]]:
    """``factory(**settings)`` starts an `AppThread` (stopped after the test)."""
    started: list[AppThread] = []

    def factory(**settings: Any) -> AppThread:
        app = AppThread(tmp_path, **settings).start()
        started.append(app)
        return app

    yield factory
    for app in reversed(started):
        app.stop()


@pytest.fixture
def inbox_app(inbox_app_factory: Callable[..., AppThread]) -> AppThread:
    return inbox_app_factory()
