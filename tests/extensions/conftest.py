"""Extension and LMTP fixtures: a message recorder, a trustme certificate for mx.test,
and a server factory recording messages."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import pytest
import trustme
from ext_support import Mailbox


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture(scope="session")
def ext_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def mx_pair(ext_ca: trustme.CA) -> dict[str, bytes]:
    """key= and cert= for mx.test (and 127.0.0.1)."""
    leaf = ext_ca.issue_cert("mx.test", "127.0.0.1")
    return {
        "key": leaf.private_key_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
    }


@pytest.fixture
def tls_client(ext_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ext_ca.configure_trust(context)
    return context


@pytest.fixture
def server(start_server: Callable[..., Any], mailbox: Mailbox, mx_pair: dict[str, bytes]) -> Callable[..., Any]:
    """start_server with on_data=mailbox.on_data and the mx.test certificate."""

    def start(**options: Any) -> Any:
        options.setdefault("on_data", mailbox.on_data)
        for name, value in mx_pair.items():
            options.setdefault(name, value)
        return start_server(**options)

    return start
