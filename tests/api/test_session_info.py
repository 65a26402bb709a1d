"""What handlers can see: the client's certificate (session.tls_options) and the PROXY
header (session.proxy)."""

from __future__ import annotations

import smtplib
import socket
import ssl
import struct

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smtpgate import ServerThread, Session, SMTPServer, TLSDetails
from smtpgate.proxy import ProxyInfo


class Seen:
    def __init__(self) -> None:
        self.sessions: list[Session] = []

    def on_mail_from(self, address: object, session: Session) -> None:
        self.sessions.append(session)


def _tls_server(authority: trustme.CA, seen: Seen, **options: object) -> SMTPServer:
    pair = authority.issue_cert("mx.test")
    untyped: dict[str, object] = {
        "name": "mx.test",
        "disable_reverse_lookup": True,
        "cert": pair.cert_chain_pems[0].bytes(),
        "key": pair.private_key_pem.bytes(),
        "on_mail_from": seen.on_mail_from,
        **options,
    }
    return SMTPServer(**untyped)  # type: ignore[arg-type]


def _send(port: int, context: ssl.SSLContext) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.starttls(context=context)
        client.ehlo("client.test")
        assert client.mail("a@example.com")[0] == 250


def test_handlers_see_the_client_certificate() -> None:
    ca = trustme.CA()
    seen = Seen()
    server = _tls_server(ca, seen, request_cert=True, ca=ca.cert_pem.bytes())
    client_cert = ca.issue_cert("client.example", common_name="client.example")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.check_hostname = False
    client_cert.configure_cert(context)
    with ServerThread(server) as running:
        _send(running.port, context)
    [session] = seen.sessions
    info = session.tls
    assert isinstance(info, TLSDetails) and info.peer_certificate is not None and info.peer_certificate_der
    assert (("commonName", "client.example"),) in info.peer_certificate["subject"]
    assert ("DNS", "client.example") in info.peer_certificate["subjectAltName"]
    der = x509.load_der_x509_certificate(info.peer_certificate_der)
    assert der.public_bytes(Encoding.PEM) == client_cert.cert_chain_pems[0].bytes()


def test_without_request_cert_there_is_no_peer_certificate() -> None:
    ca = trustme.CA()
    seen = Seen()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.check_hostname = False
    with ServerThread(_tls_server(ca, seen)) as running:
        _send(running.port, context)
    [session] = seen.sessions
    assert session.tls_options is not None and session.tls_options.version.startswith("TLSv1.")
    assert session.tls is not None and session.tls.peer_certificate is None


V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def _v2_tcp4(source: str, destination: str, sport: int, dport: int, tlvs: bytes) -> bytes:
    addresses = socket.inet_aton(source) + socket.inet_aton(destination) + struct.pack("!HH", sport, dport)
    body = addresses + tlvs
    return V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(body)) + body


def _say_mail(port: int, header: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(header)
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        sock.sendall(b"EHLO client.test\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        sock.sendall(b"MAIL FROM:<a@example.com>\r\n")
        assert reader.readline().startswith(b"250 ")
        sock.sendall(b"QUIT\r\n")
        reader.readline()


def test_handlers_see_the_proxy_header() -> None:
    seen = Seen()
    server = SMTPServer(name="mx.test", disable_reverse_lookup=True, use_proxy="*", on_mail_from=seen.on_mail_from)
    authority = b"\x02" + struct.pack("!H", 16) + b"mail.example.org"
    with ServerThread(server) as running:
        _say_mail(running.port, _v2_tcp4("203.0.113.7", "192.0.2.25", 40000, 25, authority))
        _say_mail(running.port, b"PROXY TCP4 198.51.100.9 192.0.2.26 41000 587\r\n")
    first, second = (session.proxy for session in seen.sessions)
    assert first == ProxyInfo(
        version=2,
        source_address="203.0.113.7",
        source_port=40000,
        destination_address="192.0.2.25",
        destination_port=25,
        tlvs={0x02: b"mail.example.org"},
    )
    assert second is not None and second.version == 1
    assert (second.destination_address, second.destination_port) == ("192.0.2.26", 587)
    assert seen.sessions[1].remote_address == "198.51.100.9"


def test_without_a_proxy_session_proxy_is_none() -> None:
    seen = Seen()
    server = SMTPServer(name="mx.test", disable_reverse_lookup=True, on_mail_from=seen.on_mail_from)
    with ServerThread(server) as running:
        _say_mail(running.port, b"")
    assert seen.sessions[0].proxy is None
