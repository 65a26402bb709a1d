"""Real third-party TLS clients against a real server on 127.0.0.1: openssl s_client, swaks
and curl (STARTTLS and implicit TLS, verifying against the test CA), and clients limited
to TLS 1.2 against min_version/max_version.

The command-line tools read the CA from a file written for the test run; every one runs
with a timeout and with its stdin fed or closed. (aiosmtplib with start_tls and use_tls
is in test_starttls.py.)
"""

from __future__ import annotations

import re
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from tls_support import NamedSMTP_SSL, cert_pem, client_context, require_tool, smtp, tls_pair

from support import wait_for_log

pytestmark = pytest.mark.timeout(60)

TOOL_TIMEOUT = 20  # seconds for any one command-line client

# Dot-stuffing both ways, and a message ending in CRLF (swaks and curl would add one).
MESSAGE = b"Subject: real client\r\n\r\nline one\r\n.a line starting with a dot\r\n..two dots\r\n.\r\nlast line\r\n"


class Secured:
    """on_secure calls: (servername, TLS version) per session, from the server thread."""

    def __init__(self) -> None:
        self.sessions: list[tuple[str | None, str | None]] = []
        self._lock = threading.Lock()

    def __call__(self, tls, session) -> None:
        with self._lock:
            self.sessions.append((session.servername, session.tls_options and session.tls_options.version))


@pytest.fixture
def secured() -> Secured:
    return Secured()


@pytest.fixture
def tls_server(start_server, received, certs, mx, events, secured):
    """A server with mx.test as the default certificate and a.example by SNI."""

    def start(**options):
        running = start_server(
            on_data=received.on_data,
            on_secure=secured,
            sni_options={"a.example": tls_pair(certs.server["a.example"])},
            **{**mx, **options},
        )
        running.server.on("error", events.on_error)
        return running

    return start


@pytest.fixture
def ca_file(certs) -> Path:
    return certs.files["ca.pem"]


@pytest.fixture
def other_ca_file(certs, tmp_path) -> Path:
    path = tmp_path / "other-ca.pem"
    path.write_bytes(certs.other_ca.cert_pem.bytes())
    return path


@pytest.fixture
def message_file(tmp_path) -> Path:
    path = tmp_path / "message.eml"
    path.write_bytes(MESSAGE)
    return path


@pytest.fixture
def swaks_message_file(tmp_path) -> Path:
    """swaks always ends the data with CRLF . CRLF, adding a CRLF of its own: the file leaves it out."""
    path = tmp_path / "swaks.eml"
    path.write_bytes(MESSAGE.removesuffix(b"\r\n"))
    return path


def run(command: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """Run a client: stdin fed (then closed), output captured, bounded by TOOL_TIMEOUT."""
    result = subprocess.run(command, input=stdin, capture_output=True, timeout=TOOL_TIMEOUT)
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode("utf-8", "replace"),
        result.stderr.decode("utf-8", "replace"),
    )


def check_delivered(received, name: str = "mx.test") -> None:
    received.wait_for(1)
    mail_from, rcpts, body, session = received.messages[0]
    assert (mail_from, rcpts) == ("a@example.com", ["b@example.com"])
    assert body == MESSAGE, "the handler gets the message byte for byte"
    assert session.secure is True
    assert session.transmission_type == "ESMTPS"
    assert session.servername == name
    assert session.tls_options.version == "TLSv1.3"


# ----------------------------------------------------------------- openssl s_client


def s_client(port: int, *args: str, starttls: bool = True, servername: str = "mx.test", ca: Path | None = None):
    """``openssl s_client`` that says QUIT once TLS is up and reads until the server closes."""
    openssl = require_tool("openssl")
    command = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", servername]
    if starttls:
        command += ["-starttls", "smtp"]
    if ca is not None:
        command += ["-CAfile", str(ca), "-verify_hostname", servername, "-verify_return_error"]
    # -crlf: QUIT\r\n; -ign_eof: wait for the server's 221 and close instead of quitting at end of input
    return run([*command, "-crlf", "-ign_eof", *args], stdin=b"QUIT\n")


def served_certificate(output: str) -> bytes:
    found = re.search(r"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n", output, re.S)
    assert found, output
    return found.group(0).encode("ascii")


@pytest.mark.parametrize("name", ["mx.test", "a.example"])
def test_openssl_starttls_verifies_the_certificate_chosen_by_sni(
    name, tls_server, received, certs, ca_file, secured, events
):
    running = tls_server()
    result = s_client(running.port, servername=name, ca=ca_file)
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    assert "Verify return code: 0 (ok)" in out
    assert f"Verified peername: {name}" in out
    pem = served_certificate(out)
    assert pem == cert_pem(certs.server[name])
    certificate = x509.load_pem_x509_certificate(pem)
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [name]
    unit = certificate.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
    assert re.search(rf"^subject=.*OU = {re.escape(unit)}$", out, re.M), out
    assert "221 2.0.0 Bye" in out
    assert secured.sessions == [(name, "TLSv1.3")]
    assert events.errors == []


def test_openssl_implicit_tls(tls_server, certs, ca_file, secured, events):
    running = tls_server(secure=True)
    result = s_client(running.port, starttls=False, ca=ca_file)
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    assert "Verify return code: 0 (ok)" in out
    assert served_certificate(out) == cert_pem(certs.server["mx.test"])
    assert "220 mx.test ESMTP" in out, "the greeting comes inside TLS"
    assert "221 2.0.0 Bye" in out
    assert secured.sessions == [("mx.test", "TLSv1.3")]
    assert events.errors == []


def test_openssl_refuses_a_server_it_does_not_trust(tls_server, other_ca_file, secured, events, smtpgate_log):
    running = tls_server()
    result = s_client(running.port, ca=other_ca_file)
    assert result.returncode != 0
    assert "221 2.0.0 Bye" not in result.stdout
    wait_for_log(smtpgate_log, "TLS handshake with 127.0.0.1 failed")
    assert events.wait_for_error()[1].remote_address == "127.0.0.1"
    assert secured.sessions == []


@pytest.mark.parametrize("starttls", [True, False], ids=["starttls", "implicit"])
def test_openssl_tls12_only_is_accepted_by_default(starttls, tls_server, ca_file, secured):
    running = tls_server(secure=not starttls)
    result = s_client(running.port, "-tls1_2", starttls=starttls, ca=ca_file)
    assert result.returncode == 0, result.stderr + result.stdout
    assert re.search(r"^\s*Protocol\s*: TLSv1\.2$", result.stdout, re.M), result.stdout
    assert "221 2.0.0 Bye" in result.stdout
    assert secured.sessions == [("mx.test", "TLSv1.2")]


@pytest.mark.parametrize("starttls", [True, False], ids=["starttls", "implicit"])
def test_openssl_tls12_only_is_refused_under_min_version_tls13(
    starttls, tls_server, ca_file, secured, events, smtpgate_log
):
    running = tls_server(secure=not starttls, min_version="TLSv1.3")
    result = s_client(running.port, "-tls1_2", starttls=starttls, ca=ca_file)
    assert result.returncode != 0
    # RFC 8446 wants a protocol_version alert; asyncio's and uvloop's SSL transports drop the alert
    # OpenSSL queued and just close (CPython gh-98078), so the client may only see an EOF.
    output = result.stdout + result.stderr
    assert "alert protocol version" in output or "unexpected eof while reading" in output, output
    assert "Cipher is (NONE)" in result.stdout
    assert "221 2.0.0 Bye" not in result.stdout
    record = wait_for_log(smtpgate_log, "TLS handshake with 127.0.0.1 failed")
    assert record.getMessage().endswith("failed: UNSUPPORTED_PROTOCOL")
    error, session = events.wait_for_error()
    assert isinstance(error, ssl.SSLError) and session.remote_address == "127.0.0.1"
    assert secured.sessions == []


# ----------------------------------------------------------------- swaks


def swaks(port: int, message_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("swaks")
    command = [tool, "--server", "127.0.0.1", "--port", str(port), "--helo", "client.test"]
    command += ["--from", "a@example.com", "--to", "b@example.com", "--data", f"@{message_file}"]
    return run([*command, *args])


@pytest.mark.parametrize("flag", ["--tls", "--tlsc"], ids=["starttls", "implicit"])
def test_swaks_delivers_over_tls(flag, tls_server, received, ca_file, swaks_message_file, events):
    running = tls_server(secure=flag == "--tlsc")
    # swaks (20201014) checks the chain with --tls-verify, not the host name; --tls-sni names mx.test.
    result = swaks(
        running.port, swaks_message_file, flag, "--tls-verify", "--tls-ca-path", str(ca_file), "--tls-sni", "mx.test"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "=== TLS started with cipher TLSv1.3" in result.stdout
    assert "<~  250 2.6.0" in result.stdout, "the 250 for the message came inside TLS"
    check_delivered(received)
    assert events.errors == []


def test_swaks_with_sni_gets_the_sni_certificate(tls_server, received, certs, ca_file, swaks_message_file):
    running = tls_server()
    result = swaks(
        running.port,
        swaks_message_file,
        "--tls",
        "--tls-verify",
        "--tls-ca-path",
        str(ca_file),
        "--tls-sni",
        "a.example",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    leaf = x509.load_pem_x509_certificate(cert_pem(certs.server["a.example"]))
    unit = leaf.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
    assert f"OU={unit}" in result.stdout
    check_delivered(received, name="a.example")


def test_swaks_refuses_a_server_it_does_not_trust(tls_server, received, other_ca_file, swaks_message_file, events):
    running = tls_server()
    result = swaks(running.port, swaks_message_file, "--tls", "--tls-verify", "--tls-ca-path", str(other_ca_file))
    assert result.returncode != 0
    assert "MAIL FROM" not in result.stdout
    events.wait_for_error()
    assert received.messages == []


# ----------------------------------------------------------------- curl


def curl(scheme: str, port: int, ca: Path, message_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("curl")
    command = [tool, "--silent", "--show-error", f"{scheme}://mx.test:{port}/client.test"]
    command += ["--resolve", f"mx.test:{port}:127.0.0.1", "--cacert", str(ca), "--max-time", str(TOOL_TIMEOUT)]
    command += ["--mail-from", "a@example.com", "--mail-rcpt", "b@example.com", "--upload-file", str(message_file)]
    command += ["--write-out", "%{ssl_verify_result} %{response_code}"]
    return run([*command, *args])


@pytest.mark.parametrize("scheme", ["smtp", "smtps"], ids=["starttls", "implicit"])
def test_curl_delivers_over_tls(scheme, tls_server, received, ca_file, message_file, events):
    running = tls_server(secure=scheme == "smtps")
    extra = ["--ssl-reqd"] if scheme == "smtp" else []
    result = curl(scheme, running.port, ca_file, message_file, *extra)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0 250", "certificate verified (0), message accepted (250)"
    check_delivered(received)
    assert events.errors == []


@pytest.mark.parametrize("scheme", ["smtp", "smtps"], ids=["starttls", "implicit"])
def test_curl_refuses_a_server_it_does_not_trust(scheme, tls_server, received, other_ca_file, message_file, events):
    running = tls_server(secure=scheme == "smtps")
    extra = ["--ssl-reqd"] if scheme == "smtp" else []
    result = curl(scheme, running.port, other_ca_file, message_file, *extra)
    assert result.returncode == 60, result.stderr  # CURLE_PEER_FAILED_VERIFICATION
    events.wait_for_error()
    assert received.messages == []


# ----------------------------------------------------------------- TLS versions (Python's ssl)


TLS12 = ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
def test_tls12_only_client_is_refused_under_min_version_tls13(
    implicit, tls_server, certs, raw_client, secured, events, smtpgate_log
):
    running = tls_server(secure=implicit, min_version="TLSv1.3")
    client = raw_client(running.port)
    if not implicit:
        assert client.reply()[0] == 220
        assert client.command("EHLO client.test")[0] == 250
        assert client.command("STARTTLS")[0] == 220
    # "alert protocol version", or an EOF where the alert is dropped (CPython gh-98078)
    with pytest.raises(ssl.SSLError, match="(?i)version|eof"):
        client.sock = client_context(certs, maximum_version=TLS12).wrap_socket(client.sock, server_hostname="mx.test")
    error, session = events.wait_for_error()
    assert isinstance(error, ssl.SSLError) and session.remote_address == "127.0.0.1"
    wait_for_log(smtpgate_log, "TLS handshake with 127.0.0.1 failed")
    assert secured.sessions == []
    # a TLS 1.3 client is served
    if implicit:
        with NamedSMTP_SSL("127.0.0.1", running.port, context=client_context(certs), timeout=10) as good:
            assert good.noop()[0] == 250
    else:
        with smtp(running.port) as good:
            good.starttls(context=client_context(certs))
            assert good.noop()[0] == 250
    assert secured.sessions == [("mx.test", "TLSv1.3")]


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
def test_tls12_only_client_is_accepted_by_default(implicit, tls_server, received, certs):
    running = tls_server(secure=implicit)
    context = client_context(certs, maximum_version=TLS12)
    if implicit:
        with NamedSMTP_SSL("127.0.0.1", running.port, context=context, timeout=10) as client:
            assert client.sock.version() == "TLSv1.2"
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    else:
        with smtp(running.port) as client:
            client.starttls(context=context)
            assert client.sock.version() == "TLSv1.2"
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    received.wait_for(1)
    assert received.messages[0][3].tls_options.version == "TLSv1.2"


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
def test_max_version_tls12_makes_a_tls13_client_use_tls12(implicit, tls_server, received, certs):
    running = tls_server(secure=implicit, max_version="TLSv1.2")
    context = client_context(certs)
    assert context.maximum_version in (ssl.TLSVersion.MAXIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_3)
    if implicit:
        with NamedSMTP_SSL("127.0.0.1", running.port, context=context, timeout=10) as client:
            assert client.sock.version() == "TLSv1.2"
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    else:
        with smtp(running.port) as client:
            client.starttls(context=context)
            assert client.sock.version() == "TLSv1.2"
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    received.wait_for(1)
    info = received.messages[0][3].tls_options
    assert info.version == "TLSv1.2"
    assert info.standard_name.startswith("TLS_ECDHE_")


def test_max_version_tls12_with_openssl(tls_server, ca_file, secured):
    """openssl offering TLS 1.3 and 1.2 settles on 1.2 with a max_version="TLSv1.2" server."""
    running = tls_server(max_version="TLSv1.2")
    result = s_client(running.port, ca=ca_file)
    assert result.returncode == 0, result.stderr + result.stdout
    assert re.search(r"^\s*Protocol\s*: TLSv1\.2$", result.stdout, re.M), result.stdout
    assert secured.sessions == [("mx.test", "TLSv1.2")]
