"""Fixtures of the delivery tests: queued messages, Postfix and Dovecot on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme
from delivery_services import Dovecot, Postfix


@pytest.fixture(scope="module")
def postfix(test_ca: trustme.CA) -> Iterator[Postfix]:
    """Postfix on a loopback port, offering STARTTLS with a certificate of the test CA."""
    leaf = test_ca.issue_cert("127.0.0.1", "smarthost.test")
    cert = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    server = Postfix(cert, leaf.private_key_pem.bytes())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    """Dovecot's LMTP on a loopback port."""
    server = Dovecot()
    try:
        server.start()
        yield server
    finally:
        server.stop()
