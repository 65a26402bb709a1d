"""STARTTLS: real clients, the session after the upgrade, the protocol rules around it,
the development certificate, needs_upgrade, hide_starttls, and the injection defence."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket
import ssl

import aiosmtplib
import pytest
from tls_support import NamedSMTP_SSL, client_context, der, ehlo_keywords, send_message, smtp, starttls

from smtpgate import SMTPServer
from support import upgrade

pytestmark = pytest.mark.timeout(30)

MESSAGE = b"Subject: tls\r\n\r\nsent inside TLS\r\n"


def test_smtplib_starttls_delivers_inside_tls(start_server, received, certs, mx):
    running = start_server(on_data=received.on_data, **mx)
    with smtp(running.port) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        code, _ = client.starttls(context=client_context(certs))
        assert code == 220
        assert client.sock.getpeercert(binary_form=True) == der(certs.server["mx.test"])
        client.ehlo()
        assert not client.has_extn("starttls"), "EHLO after TLS must not offer STARTTLS again (RFC 3207)"
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    received.wait_for(1)
    mail_from, rcpts, body, session = received.messages[0]
    assert (mail_from, rcpts, body) == ("a@example.com", ["b@example.com"], MESSAGE)
    assert session.secure is True
    assert session.transmission_type == "ESMTPS"
    assert session.tls_options is not None
    assert session.tls_options.version == "TLSv1.3"
    assert session.tls_options.name.startswith("TLS_")  # TLS 1.3 suites carry their IANA name
    assert session.tls_options.standard_name == session.tls_options.name
    assert session.servername == "mx.test"


def test_tls12_session_reports_the_iana_cipher_name(start_server, received, certs, mx):
    running = start_server(on_data=received.on_data, **mx)
    with smtp(running.port) as client:
        client.starttls(context=client_context(certs, maximum_version=ssl.TLSVersion.TLSv1_2))
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    received.wait_for(1)
    info = received.messages[0][3].tls_options
    assert info.version == "TLSv1.2"
    assert info.name.startswith("ECDHE-")  # OpenSSL's name...
    assert info.standard_name.startswith("TLS_ECDHE_")  # ...and the IANA one


def test_aiosmtplib_start_tls(start_server, received, certs, mx):
    running = start_server(on_data=received.on_data, **mx)

    async def send() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=running.port, start_tls=False, timeout=5)
        await client.connect()
        await client.ehlo()
        assert client.supports_extension("starttls")
        response = await client.starttls(server_hostname="mx.test", tls_context=client_context(certs))
        assert response.code == 220
        await client.ehlo()
        assert not client.supports_extension("starttls")
        await client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        await client.quit()

    asyncio.run(asyncio.wait_for(send(), 20))
    received.wait_for(1)
    session = received.messages[0][3]
    assert received.messages[0][2] == MESSAGE
    assert (session.secure, session.transmission_type, session.tls_options.version) == (True, "ESMTPS", "TLSv1.3")


def test_aiosmtplib_implicit_tls(start_server, received, certs, mx):
    running = start_server(on_data=received.on_data, secure=True, **mx)

    async def send() -> None:
        # Given a connected socket, aiosmtplib uses ``hostname`` only as the name to verify.
        sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
        sock.setblocking(False)
        client = aiosmtplib.SMTP(
            hostname="mx.test", sock=sock, use_tls=True, tls_context=client_context(certs), timeout=10
        )
        await client.connect()
        await client.ehlo()
        assert not client.supports_extension("starttls")
        await client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        await client.quit()

    asyncio.run(asyncio.wait_for(send(), 20))
    received.wait_for(1)
    session = received.messages[0][3]
    assert received.messages[0][2] == MESSAGE
    assert (session.secure, session.transmission_type, session.tls_options.version) == (True, "ESMTPS", "TLSv1.3")
    assert session.servername == "mx.test"


def test_smtplib_implicit_tls(start_server, received, certs, mx):
    running = start_server(on_data=received.on_data, secure=True, **mx)
    with NamedSMTP_SSL("127.0.0.1", running.port, context=client_context(certs), timeout=10) as client:
        assert client.sock.getpeercert(binary_form=True) == der(certs.server["mx.test"])
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    received.wait_for(1)
    session = received.messages[0][3]
    assert (session.secure, session.transmission_type) == (True, "ESMTPS")
    assert session.tls_options.version == "TLSv1.3"


def test_helo_inside_tls_keeps_transmission_type_smtp(start_server, received, certs, mx, raw_client):
    """RFC 3848: ESMTPS is for EHLO; a HELO client inside TLS is plain SMTP."""
    running = start_server(on_data=received.on_data, **mx)
    client = raw_client(running.port)
    starttls(client, client_context(certs))
    assert client.command("HELO client.test")[0] == 250
    send_message(client)
    received.wait_for(1)
    assert received.messages[0][3].transmission_type == "SMTP"
    assert received.messages[0][3].secure is True


def test_starttls_again_inside_tls_is_503(start_server, certs, mx, raw_client):
    running = start_server(**mx)
    client = raw_client(running.port)
    starttls(client, client_context(certs))
    code, text = client.command("EHLO client.test")
    assert code == 250
    assert "STARTTLS" not in ehlo_keywords(text)
    code, text = client.command("STARTTLS")
    assert code == 503, text
    assert text.startswith("5.5.1")
    assert client.command("NOOP")[0] == 250  # the session goes on


def test_starttls_inside_implicit_tls_is_503(start_server, certs, mx, raw_client):
    running = start_server(secure=True, **mx)
    client = raw_client(running.port)
    upgrade(client, client_context(certs))
    assert client.reply()[0] == 220
    code, text = client.command("EHLO client.test")
    assert code == 250
    assert "STARTTLS" not in ehlo_keywords(text)
    code, text = client.command("STARTTLS")
    assert code == 503, f"{code} {text}"


def test_starttls_with_an_argument_is_501(start_server, certs, mx, raw_client):
    running = start_server(**mx)
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    assert client.command("EHLO client.test")[0] == 250
    code, text = client.command("STARTTLS now")
    assert code == 501, text
    # still plaintext, and STARTTLS proper still works
    assert client.command("STARTTLS")[0] == 220
    upgrade(client, client_context(certs))
    assert client.command("EHLO client.test")[0] == 250


def test_development_certificate_when_no_key_or_cert(start_server, received, smtpgate_log):
    server = SMTPServer(name="mx.test", disable_reverse_lookup=True, on_data=received.on_data)
    warnings = [
        r for r in smtpgate_log.records if r.name == "smtpgate" and r.levelno == logging.WARNING and "cert" in r.message
    ]
    assert warnings, "no warning about the generated development certificate"
    assert "mx.test" in warnings[0].getMessage()
    running = start_server(server)
    with smtp(running.port) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        client.starttls(context=client_context(None))  # unverified: the certificate is self-signed
        client.ehlo()
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
        peer = client.sock.getpeercert(binary_form=True)
    received.wait_for(1)
    assert received.messages[0][3].secure is True
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    certificate = x509.load_der_x509_certificate(peer)
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "mx.test"
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mx.test" in names.get_values_for_type(x509.DNSName)


def test_development_certificate_is_not_trusted_by_a_verifying_client(start_server, certs, smtpgate_log):
    running = start_server()
    with smtp(running.port) as client:
        client.ehlo()
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=client_context(certs))


def test_needs_upgrade_refuses_mail_before_starttls(smtpgate_server_factory, certs, mx, raw_client):
    server = smtpgate_server_factory(needs_upgrade=True, **mx)
    client = raw_client(server.port)
    assert client.reply()[0] == 220
    code, text = client.command("EHLO client.test")
    assert "STARTTLS" in ehlo_keywords(text)
    client.send("MAIL FROM:<a@example.com>\r\n")
    assert client.read_line() == b"530 5.7.0 Must issue a STARTTLS command first"
    assert client.command("RCPT TO:<b@example.com>")[0] in (503, 530)
    assert client.command("STARTTLS")[0] == 220
    upgrade(client, client_context(certs))
    assert client.command("EHLO client.test")[0] == 250
    send_message(client)
    [message] = server.wait_for(1)
    assert message.secure is True


def test_needs_upgrade_with_smtplib(smtpgate_server_factory, certs, mx):
    server = smtpgate_server_factory(needs_upgrade=True, **mx)
    with smtp(server.port) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert refused.value.smtp_code == 530
        client.starttls(context=client_context(certs))
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    server.wait_for(1)


def test_hide_starttls_still_accepts_starttls(smtpgate_server_factory, certs, mx, raw_client):
    server = smtpgate_server_factory(hide_starttls=True, **mx)
    client = raw_client(server.port)
    keywords = starttls(client, client_context(certs))
    assert "STARTTLS" not in keywords
    code, text = client.command("EHLO client.test")
    assert code == 250 and "STARTTLS" not in ehlo_keywords(text)
    send_message(client)
    [message] = server.wait_for(1)
    assert message.secure is True


def test_starttls_injection_is_discarded(smtpgate_server_factory, certs, mx, raw_client):
    """CVE-2011-0411: plaintext pipelined behind STARTTLS must not be executed inside TLS."""
    server = smtpgate_server_factory(**mx)
    client = raw_client(server.port)
    assert client.reply()[0] == 220
    assert client.command("EHLO client.test")[0] == 250
    client.send("STARTTLS\r\nMAIL FROM:<evil@x>\r\n")  # one packet
    code, text = client.reply()
    assert code == 220, text
    upgrade(client, client_context(certs))
    code, text = client.command("EHLO client.test")
    assert code == 250, text
    code, text = client.command("RCPT TO:<a@b>")
    assert code == 503, f"injected MAIL took effect: RCPT answered {code} {text}"
    assert "MAIL" in text
    send_message(client)  # a real transaction still works
    [message] = server.wait_for(1)
    assert message.mail_from == "a@example.com"


def test_injection_with_the_tls_handshake_in_the_same_packet_is_discarded(start_server, mx, certs, raw_client):
    """Variant: the injected command and a later real command; the server answers only the real one."""
    running = start_server(**mx)
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    client.send("EHLO client.test\r\nSTARTTLS\r\nRSET\r\nNOOP\r\n")
    assert client.reply()[0] == 250
    assert client.reply()[0] == 220
    upgrade(client, client_context(certs))  # asserts no plaintext reply (to RSET/NOOP) was sent
    code, text = client.command("HELP")
    assert code == 214, f"a reply to an injected command came first: {code} {text}"


def test_helo_is_required_again_after_starttls(start_server, certs, mx, raw_client):
    """RFC 3207 4.2: the server forgets everything from the plaintext session, EHLO included."""
    running = start_server(**mx)
    client = raw_client(running.port)
    starttls(client, client_context(certs))
    code, text = client.command("MAIL FROM:<a@example.com>")
    assert code == 503, text
    assert "HELO" in text or "EHLO" in text
    assert client.command("EHLO client.test")[0] == 250
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250


def test_envelope_is_reset_by_starttls(start_server, certs, mx, raw_client):
    running = start_server(**mx)
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    assert client.command("EHLO client.test")[0] == 250
    assert client.command("MAIL FROM:<plain@example.com>")[0] == 250
    assert client.command("STARTTLS")[0] == 220
    upgrade(client, client_context(certs))
    assert client.command("EHLO client.test")[0] == 250
    assert client.command("RCPT TO:<b@example.com>")[0] == 503


def _starttls_then_ehlo_with_finished(port: int, context: ssl.SSLContext) -> bytes:
    """STARTTLS, with the client side of the handshake driven by hand so that the client's
    last handshake flight (Finished) and its EHLO reach the server in one TCP segment, as
    from a fast client on a busy network. Returns what the server sent inside TLS."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    with sock:
        plain = b""
        while b"\r\n" not in plain:  # the greeting first: talking before it is refused
            chunk = sock.recv(4096)
            assert chunk, "closed before the greeting"
            plain += chunk
        plain = b""
        sock.sendall(b"EHLO client.test\r\n")
        while b"\r\n250 " not in plain:
            chunk = sock.recv(4096)
            assert chunk, f"closed before EHLO was answered: {plain!r}"
            plain += chunk
        sock.sendall(b"STARTTLS\r\n")
        plain = b""
        while not plain.endswith(b"\r\n"):
            plain += sock.recv(4096)
        assert plain.startswith(b"220 "), plain
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname="mx.test")
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                chunk = sock.recv(65536)
                assert chunk, "closed during the handshake"
                incoming.write(chunk)
        tls.write(b"EHLO client.test\r\n")
        sock.sendall(outgoing.read())  # client Finished + EHLO in one write
        received = b""
        try:
            while b"250 " not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                incoming.write(chunk)
                while True:
                    try:
                        data = tls.read(65536)
                    except ssl.SSLWantReadError:
                        break
                    if not data:
                        return received
                    received += data
        except (TimeoutError, ssl.SSLError, OSError):
            pass
        return received


def test_ehlo_arriving_with_the_clients_finished_is_answered(start_server, certs, mx):
    """After STARTTLS a client may send EHLO right behind its Finished message; if both
    arrive in one read, the server must still answer the EHLO (not drop it as plaintext)."""
    running = start_server(**mx)
    received = _starttls_then_ehlo_with_finished(running.port, client_context(certs))
    assert b"250 " in received, f"EHLO sent with the client's Finished was not answered: {received!r}"
