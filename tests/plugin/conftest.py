"""The plugin is tested with pytester: each test writes a small test file and runs it.

``pytest_plugins = ["pytester"]`` would be the usual way, but pytest refuses it outside
the top-level conftest when the whole suite runs; loading it here works in both cases.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")


@pytest.fixture(autouse=True, scope="session")
def _import_tls_modules_once() -> None:
    """pytester's in-process runs unload the modules a run imported; cryptography's
    classes must not be loaded twice, so the outer process loads them first."""
    from smtpgate import SMTPServer

    SMTPServer(name="warm-up.test")  # builds the development certificate
