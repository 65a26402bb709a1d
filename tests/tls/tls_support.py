"""Helpers for the TLS tests: certificate material, client contexts, STARTTLS by hand."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from support import upgrade

SERVER_NAMES = ("mx.test", "a.example", "b.example", "*.wild.example")


@dataclass
class Certs:
    """The CA every test trusts, its server and client certificates, and a second CA nobody trusts."""

    ca: trustme.CA
    other_ca: trustme.CA
    server: dict[str, trustme.LeafCert]
    mx_b: trustme.LeafCert  # a second certificate for mx.test, for rotation
    a_2: trustme.LeafCert  # a second certificate for a.example, for SNI rotation
    client: trustme.LeafCert
    foreign_client: trustme.LeafCert
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem.bytes()


def key_pem(leaf: trustme.LeafCert) -> bytes:
    return leaf.private_key_pem.bytes()


def cert_pem(leaf: trustme.LeafCert) -> bytes:
    """The leaf and its chain (trustme issues straight from the root: just the leaf)."""
    return b"".join(blob.bytes() for blob in leaf.cert_chain_pems)


def tls_pair(leaf: trustme.LeafCert) -> dict[str, bytes]:
    """``key=`` and ``cert=`` options for a certificate."""
    return {"key": key_pem(leaf), "cert": cert_pem(leaf)}


def der(leaf: trustme.LeafCert) -> bytes:
    """The leaf certificate in DER, as ``getpeercert(binary_form=True)`` returns it."""
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode("ascii"))


def make_certs(folder: Path) -> Certs:
    """Fresh keys and certificates; the files the command-line clients need go in ``folder``."""
    ca = trustme.CA()
    other_ca = trustme.CA()
    made = Certs(
        ca=ca,
        other_ca=other_ca,
        server={name: ca.issue_cert(name) for name in SERVER_NAMES},
        mx_b=ca.issue_cert("mx.test", organization_unit_name="rotated"),
        a_2=ca.issue_cert("a.example", organization_unit_name="rotated"),
        client=ca.issue_cert("client.example"),
        foreign_client=other_ca.issue_cert("client.example"),
    )
    for name, blob in {
        "ca.pem": ca.cert_pem.bytes(),
        "mx.key": key_pem(made.server["mx.test"]),
        "mx.crt": cert_pem(made.server["mx.test"]),
        "client.key": key_pem(made.client),
        "client.crt": cert_pem(made.client),
    }.items():
        path = folder / name
        path.write_bytes(blob)
        made.files[name] = path
    return made


def client_context(
    certs: Certs | None = None,
    *,
    check_hostname: bool = True,
    client_cert: trustme.LeafCert | None = None,
    maximum_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A client context trusting only the test CA (``certs=None``: verifying nothing)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if certs is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        certs.ca.configure_trust(context)
        context.check_hostname = check_hostname
    if client_cert is not None:
        client_cert.configure_cert(context)
    if maximum_version is not None:
        context.maximum_version = maximum_version
    return context


def starttls(client: Any, context: ssl.SSLContext, server_hostname: str | None = "mx.test") -> list[str]:
    """Greeting, EHLO, STARTTLS, handshake; returns the plaintext EHLO keywords."""
    code, _ = client.reply()
    assert code == 220
    code, text = client.command("EHLO client.test")
    assert code == 250
    code, text_tls = client.command("STARTTLS")
    assert code == 220, text_tls
    upgrade(client, context, server_hostname)
    return [line.split()[0].upper() for line in text.split("\n")[1:]]


def ehlo_keywords(text: str) -> list[str]:
    return [line.split()[0].upper() for line in text.split("\n")[1:]]


def send_message(client: Any, mail_from: str = "a@example.com", rcpt: str = "b@example.com") -> None:
    """One transaction over an already greeted RawClient."""
    assert client.command(f"MAIL FROM:<{mail_from}>")[0] == 250
    assert client.command(f"RCPT TO:<{rcpt}>")[0] == 250
    assert client.command("DATA")[0] == 354
    code, text = client.command("Subject: tls\r\n\r\nover TLS\r\n.")
    assert code == 250, text


def in_loop(running: Any, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` on the server's event loop thread; return its result or raise its error."""

    async def call() -> Any:
        return function(*args, **kwargs)

    return asyncio.run_coroutine_threadsafe(call(), running.loop).result(timeout=10)


class Events:
    """Records a server's ``error`` events (exception, session) from the server thread."""

    def __init__(self) -> None:
        self.errors: list[tuple[BaseException, Any]] = []
        self._lock = threading.Lock()

    def on_error(self, error: BaseException, session: Any = None) -> None:
        with self._lock:
            self.errors.append((error, session))

    def wait_for_error(self, timeout: float = 5.0) -> tuple[BaseException, Any]:
        deadline = time.monotonic() + timeout
        while not self.errors:
            if time.monotonic() > deadline:
                raise AssertionError(f"no 'error' event within {timeout} s")
            time.sleep(0.01)
        return self.errors[0]


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def smtp(port: int, server_hostname: str = "mx.test", timeout: float = 10.0) -> smtplib.SMTP:
    """smtplib connected to 127.0.0.1 that will verify ``server_hostname`` in STARTTLS.

    smtplib (3.11) has no server_hostname argument: starttls() checks the host it connected
    to, here an address; so the name is set where smtplib keeps it.
    """
    client = smtplib.SMTP("127.0.0.1", port, timeout=timeout)
    client._host = server_hostname  # type: ignore[attr-defined]
    return client


class NamedSMTP_SSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL connecting to an address but verifying ``server_name``."""

    server_name = "mx.test"

    def _get_socket(self, host: str, port: int, timeout: float) -> Any:
        self._host = self.server_name
        return super()._get_socket(host, port, timeout)


def handshake_refused(
    client: Any, context: ssl.SSLContext, server_hostname: str | None = "mx.test", *, implicit: bool = False
) -> bool:
    """Try the handshake; True if the server refused it (an alert, a reset or EOF).

    In TLS 1.3 the server checks the client's certificate after the client's side of the
    handshake is over, so the refusal shows on the first read: the client probes with
    NOOP (STARTTLS) or waits for the greeting (implicit TLS). A silent server (timeout)
    has not refused.
    """
    try:
        upgrade(client, context, server_hostname)
        client.sock.settimeout(3)
        if not implicit:
            client.sock.sendall(b"NOOP\r\n")
        data = client.sock.recv(4096)
    except TimeoutError:
        return False
    except (ssl.SSLError, OSError):
        return True
    return data == b""


def client_hello(context: ssl.SSLContext, server_hostname: str | None = "mx.test") -> bytes:
    """The bytes of a ClientHello, as the first flight of a real handshake."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()
