"""TLS fixtures: a trustme CA and certificates made once per test run (never committed),
the default mx.test key/cert, error-event and log recorders."""

from __future__ import annotations

import logging

import pytest
from tls_support import Certs, Events, make_certs, tls_pair


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def mx(certs: Certs) -> dict[str, bytes]:
    """``key=``/``cert=`` for mx.test, the server's default certificate."""
    return tls_pair(certs.server["mx.test"])


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def smtpgate_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Records of the ``smtpgate`` logger from DEBUG up (the server thread logs there too)."""
    caplog.set_level(logging.DEBUG, logger="smtpgate")
    return caplog
