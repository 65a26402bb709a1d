"""Shared fixtures: servers on 127.0.0.1 in a background thread (the plugin's and our own), and a raw SMTP client."""

from __future__ import annotations

import os
import re
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

from raw_client import RawClient
from smtpgate import ServerThread, SMTPServer
from smtpgate.pytest_plugin import SMTPTestServer

# A test that skips because a component it drives is missing (Chromium, Redis, Postfix,
# Dovecot, Knot, OpenDKIM, Exim, swaks, HAProxy, the npm Mailpit client...) tests nothing.
# scripts/test installs every one of them, so under CI such a skip is a failure.
_MISSING_COMPONENT = re.compile(r"not installed|not on PATH|not extracted|scripts/test|needs the \S+ command|need root")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not (os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail")):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if _MISSING_COMPONENT.search(reason):
        report.outcome = "failed"
        report.longrepr = f"under CI a missing component is a failure, not a skip: {reason}"


class Received:
    """Messages an on_data handler stored: (mail_from, [rcpt...], body bytes, session)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str | None, list[str], bytes, Any]] = []

    async def on_data(self, stream: Any, session: Any) -> None:
        body = await stream.read()
        envelope = session.envelope
        mail_from = envelope.mail_from.address if envelope.mail_from else None
        self.messages.append((mail_from, [r.address for r in envelope.rcpt_to], body, session))

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages, got {len(self.messages)}")
            time.sleep(0.01)


@pytest.fixture
def received() -> Received:
    return Received()


def loop_factory() -> Callable[[], Any] | None:
    """SMTPGATE_TEST_LOOP=uvloop runs every test server on uvloop."""
    if os.environ.get("SMTPGATE_TEST_LOOP") == "uvloop":
        import uvloop

        return uvloop.new_event_loop  # type: ignore[no-any-return]
    return None


@pytest.fixture
def smtpgate_server_factory(
    smtpgate_server_factory: Callable[..., SMTPTestServer],
) -> Callable[..., SMTPTestServer]:
    """The plugin's factory (and so its ``smtpgate_server``), on the loop `loop_factory` picks."""

    def factory(**options: Any) -> SMTPTestServer:
        options.setdefault("loop_factory", loop_factory())
        return smtpgate_server_factory(**options)

    return factory


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerThread]]:
    """``start_server(**options)`` runs an SMTPServer on 127.0.0.1 (free port) until the test ends.

    ``name`` defaults to ``mx.test`` and reverse lookups are off unless the test asks.
    """
    running: list[ServerThread] = []

    def start(server: SMTPServer | None = None, **options: Any) -> ServerThread:
        if server is None:
            options.setdefault("name", "mx.test")
            options.setdefault("disable_reverse_lookup", True)
            server = SMTPServer(**options)
        thread = ServerThread(server, host="127.0.0.1", port=0, loop_factory=loop_factory()).start()
        running.append(thread)
        return thread

    yield start
    for thread in running:
        thread.stop(timeout=30)


@pytest.fixture
def raw_client() -> Iterator[Callable[..., RawClient]]:
    """``raw_client(port)`` connects to 127.0.0.1:port and reads nothing yet."""
    clients: list[RawClient] = []

    def connect(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> RawClient:
        client = RawClient(host, port, timeout)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture(scope="session")
def test_ca() -> trustme.CA:
    """A certificate authority for the tests (keys made fresh for each run, never committed)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def mx_pair(test_ca: trustme.CA) -> dict[str, bytes]:
    """``key=`` and ``cert=`` for mx.test (and 127.0.0.1, so clients can verify the address they dial)."""
    leaf = test_ca.issue_cert("mx.test", "127.0.0.1")
    return {
        "key": leaf.private_key_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
    }


@pytest.fixture
def tls_client(test_ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts only the test CA (and checks the host name)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    test_ca.configure_trust(context)
    return context
