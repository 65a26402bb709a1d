"""Client certificates: request_cert, ca, reject_unauthorized."""

from __future__ import annotations

import smtplib
import ssl

import pytest
from tls_support import NamedSMTP_SSL, client_context, handshake_refused, in_loop, send_message, starttls, tls_pair

from support import wait_for_log

pytestmark = pytest.mark.timeout(30)

MESSAGE = b"Subject: client cert\r\n\r\nhello\r\n"


class PeerCerts:
    def __init__(self) -> None:
        self.seen: list[object] = []

    def __call__(self, ssl_object, session) -> None:
        self.seen.append(ssl_object.getpeercert())


@pytest.fixture
def cert_server(start_server, received, certs, mx, events):
    def start(**options):
        peer = PeerCerts()
        options = {"request_cert": True, "ca": certs.ca_pem, **mx, **options}
        running = start_server(on_data=received.on_data, on_secure=peer, **options)
        running.server.on("error", events.on_error)
        running.peer = peer
        return running

    return start


def test_client_with_a_certificate_from_the_ca_is_accepted(cert_server, received, certs, raw_client):
    running = cert_server()
    client = raw_client(running.port)
    starttls(client, client_context(certs, client_cert=certs.client))
    assert client.command("EHLO client.test")[0] == 250
    send_message(client)
    received.wait_for(1)
    assert received.messages[0][3].secure is True
    (peercert,) = running.peer.seen
    assert peercert["subjectAltName"] == (("DNS", "client.example"),)
    issuer = dict(item[0] for item in peercert["issuer"])
    assert issuer  # issued by the trustme CA


def test_session_tls_has_the_client_certificate(cert_server, received, certs, raw_client):
    running = cert_server()
    client = raw_client(running.port)
    starttls(client, client_context(certs, client_cert=certs.client))
    assert client.command("EHLO client.test")[0] == 250
    send_message(client)
    received.wait_for(1)
    tls = received.messages[0][3].tls
    assert tls.version.startswith("TLSv1.")
    assert tls.cipher and tls.standard_name
    assert tls.servername == "mx.test"
    assert tls.peer_certificate["subjectAltName"] == (("DNS", "client.example"),)
    assert tls.peer_certificate_der == ssl.PEM_cert_to_DER_cert(certs.client.cert_chain_pems[0].bytes().decode())


def test_session_tls_without_a_client_certificate(start_server, received, certs, mx, raw_client):
    running = start_server(on_data=received.on_data, **mx)
    client = raw_client(running.port)
    starttls(client, client_context(certs))
    assert client.command("EHLO client.test")[0] == 250
    send_message(client)
    received.wait_for(1)
    session = received.messages[0][3]
    assert session.tls.version == session.tls_options.version
    assert (session.tls.peer_certificate, session.tls.peer_certificate_der) == (None, None)


def test_smtplib_with_a_client_certificate(cert_server, received, certs):
    running = cert_server()
    context = client_context(certs, client_cert=certs.client)
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        client._host = "mx.test"  # the name starttls() verifies (smtplib has no server_hostname)
        client.starttls(context=context)
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    received.wait_for(1)
    assert running.peer.seen[0]["subjectAltName"] == (("DNS", "client.example"),)


def test_client_without_a_certificate_is_refused(cert_server, received, certs, raw_client, events, smtpgate_log):
    running = cert_server()
    client = raw_client(running.port)
    starttls(client, client_context(certs))  # the plaintext part still works
    assert handshake_refused_after_starttls(client, certs)
    error, session = events.wait_for_error()
    assert session is not None and session.secure is False
    wait_for_log(smtpgate_log, "TLS handshake with 127.0.0.1 failed")
    assert running.peer.seen == []
    # the server keeps serving others
    other = raw_client(running.port)
    starttls(other, client_context(certs, client_cert=certs.client))
    assert other.command("EHLO client.test")[0] == 250
    send_message(other)
    received.wait_for(1)


def handshake_refused_after_starttls(client, certs):
    """starttls() already ran the client side of the handshake (TLS 1.3: it succeeds);
    the refusal arrives on the first read."""
    client.sock.settimeout(3)
    try:
        client.sock.sendall(b"NOOP\r\n")
        data = client.sock.recv(4096)
    except TimeoutError:
        return False
    except (ssl.SSLError, OSError):
        return True
    return data == b""


def test_client_with_a_certificate_from_another_ca_is_refused(cert_server, received, certs, raw_client, events):
    running = cert_server()
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    assert client.command("EHLO client.test")[0] == 250
    assert client.command("STARTTLS")[0] == 220
    assert handshake_refused(client, client_context(certs, client_cert=certs.foreign_client))
    events.wait_for_error()
    assert running.peer.seen == []
    other = raw_client(running.port)
    starttls(other, client_context(certs, client_cert=certs.client))
    assert other.command("EHLO client.test")[0] == 250


@pytest.mark.parametrize("client_cert", ["none", "foreign"])
def test_implicit_tls_refuses_clients_without_a_valid_certificate(client_cert, cert_server, certs, raw_client, events):
    running = cert_server(secure=True)
    leaf = None if client_cert == "none" else certs.foreign_client
    client = raw_client(running.port)
    assert handshake_refused(client, client_context(certs, client_cert=leaf), implicit=True)
    events.wait_for_error()
    with NamedSMTP_SSL(
        "127.0.0.1", running.port, context=client_context(certs, client_cert=certs.client), timeout=10
    ) as good:
        assert good.noop()[0] == 250
    assert running.peer.seen[0]["subjectAltName"] == (("DNS", "client.example"),)


def test_ca_as_a_path(cert_server, certs, raw_client):
    running = cert_server(ca=certs.files["ca.pem"])
    client = raw_client(running.port)
    starttls(client, client_context(certs, client_cert=certs.client))
    assert client.command("EHLO client.test")[0] == 250
    other = raw_client(running.port)
    assert other.reply()[0] == 220
    assert other.command("STARTTLS")[0] == 220
    assert handshake_refused(other, client_context(certs))


def test_several_cas(cert_server, certs, raw_client):
    running = cert_server(ca=[certs.other_ca.cert_pem.bytes(), certs.ca_pem])
    for leaf in (certs.client, certs.foreign_client):
        client = raw_client(running.port)
        starttls(client, client_context(certs, client_cert=leaf))
        assert client.command("EHLO client.test")[0] == 250
    assert len(running.peer.seen) == 2


def test_reject_unauthorized_false_accepts_a_client_without_a_certificate(cert_server, certs, raw_client):
    running = cert_server(reject_unauthorized=False)
    client = raw_client(running.port)
    starttls(client, client_context(certs))
    assert client.command("EHLO client.test")[0] == 250
    assert running.peer.seen == [None]
    with_cert = raw_client(running.port)
    starttls(with_cert, client_context(certs, client_cert=certs.client))
    assert with_cert.command("EHLO client.test")[0] == 250
    assert running.peer.seen[1]["subjectAltName"] == (("DNS", "client.example"),)


def test_no_client_certificate_is_asked_for_by_default(start_server, certs, mx, raw_client):
    peer = PeerCerts()
    running = start_server(on_secure=peer, ca=certs.ca_pem, **mx)  # ca alone does not ask
    client = raw_client(running.port)
    starttls(client, client_context(certs, client_cert=certs.client))
    assert client.command("EHLO client.test")[0] == 250
    assert peer.seen == [None]


def test_client_certificate_required_also_for_sni_names(cert_server, certs, raw_client):
    """A client naming an sni_options host must not escape the client-certificate check."""
    running = cert_server(sni_options={"a.example": tls_pair(certs.server["a.example"])})
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    assert client.command("STARTTLS")[0] == 220
    assert handshake_refused(client, client_context(certs), "a.example")
    good = raw_client(running.port)
    starttls(good, client_context(certs, client_cert=certs.client), "a.example")
    assert good.command("EHLO client.test")[0] == 250
    assert running.peer.seen[0]["subjectAltName"] == (("DNS", "client.example"),)


def test_client_certificate_rotation_of_the_ca(cert_server, certs, raw_client):
    """update_secure_context(ca=...) changes which clients are accepted from then on."""
    running = cert_server()
    in_loop(running, running.server.update_secure_context, ca=certs.other_ca.cert_pem.bytes())
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    assert client.command("STARTTLS")[0] == 220
    assert handshake_refused(client, client_context(certs, client_cert=certs.client))
    foreign = raw_client(running.port)
    starttls(foreign, client_context(certs, client_cert=certs.foreign_client))
    assert foreign.command("EHLO client.test")[0] == 250


def test_refusal_check_sees_an_accepted_handshake(cert_server, certs, raw_client):
    """Without request_cert a client-cert-less client is not refused: handshake_refused is not always True."""
    running = cert_server(request_cert=False)
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    assert client.command("STARTTLS")[0] == 220
    assert not handshake_refused(client, client_context(certs))
    implicit = cert_server(request_cert=False, secure=True)
    other = raw_client(implicit.port)
    assert not handshake_refused(other, client_context(certs), implicit=True)
