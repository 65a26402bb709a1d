"""Fixtures for the protocol-core tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from core_support import CoreClient


@pytest.fixture
def core() -> Callable[..., CoreClient]:
    """``core(**ProtocolConfig options)``: a started CoreClient (name ``mx.test``)."""
    return CoreClient
