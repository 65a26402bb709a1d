"""Where the key and certificate come from, SNI with wildcards, and rotation with
update_secure_context()."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from tls_support import (
    client_context,
    der,
    in_loop,
    key_pem,
    send_message,
    starttls,
    tls_pair,
)

from smtpgate import SMTPServer

pytestmark = pytest.mark.timeout(30)


def _served_certificate(raw_client, port, certs, server_hostname="mx.test", *, check_hostname=True):
    """STARTTLS on a new connection; returns (client, DER of the certificate the server presented)."""
    client = raw_client(port)
    context = client_context(certs, check_hostname=check_hostname and server_hostname is not None)
    starttls(client, context, server_hostname)
    return client, client.sock.getpeercert(binary_form=True)


# ----------------------------------------------------------------- key and cert sources


@pytest.mark.parametrize("form", ["str", "bytes", "path-str", "pathlib"])
def test_key_and_cert_forms(form, smtpgate_server_factory, certs, raw_client):
    leaf = certs.server["mx.test"]
    pair = tls_pair(leaf)
    if form == "str":
        options = {"key": pair["key"].decode("ascii"), "cert": pair["cert"].decode("ascii")}
    elif form == "bytes":
        options = pair
    elif form == "path-str":
        options = {"key": str(certs.files["mx.key"]), "cert": str(certs.files["mx.crt"])}
    else:
        options = {"key": Path(certs.files["mx.key"]), "cert": Path(certs.files["mx.crt"])}
    server = smtpgate_server_factory(**options)
    client, served = _served_certificate(raw_client, server.port, certs)
    assert served == der(leaf)
    assert client.command("EHLO client.test")[0] == 250
    send_message(client)
    [message] = server.wait_for(1)
    assert message.secure is True


def test_key_as_bytes_and_cert_as_path(start_server, certs, raw_client):
    running = start_server(key=key_pem(certs.server["mx.test"]), cert=certs.files["mx.crt"])
    _, served = _served_certificate(raw_client, running.port, certs)
    assert served == der(certs.server["mx.test"])


def test_missing_key_file_raises_at_construction(certs, tmp_path):
    missing = tmp_path / "nowhere" / "key.pem"
    with pytest.raises(ValueError, match="key.pem"):
        SMTPServer(key=str(missing), cert=certs.files["mx.crt"])
    with pytest.raises(ValueError, match="key.pem"):
        SMTPServer(key=missing, cert=certs.files["mx.crt"])


def test_missing_cert_file_raises_at_construction(certs, tmp_path):
    with pytest.raises(ValueError, match="cert"):
        SMTPServer(key=certs.files["mx.key"], cert=tmp_path / "missing.crt")


def test_file_without_pem_raises(certs, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a certificate\n")
    with pytest.raises(ValueError, match="PEM"):
        SMTPServer(key=certs.files["mx.key"], cert=junk)


def test_bytes_without_pem_raise(certs):
    with pytest.raises(ValueError):
        SMTPServer(key=b"garbage", cert=tls_pair(certs.server["mx.test"])["cert"])


def test_broken_pem_raises(certs):
    broken = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    with pytest.raises(ValueError):
        SMTPServer(key=key_pem(certs.server["mx.test"]), cert=broken)


def test_key_not_matching_cert_raises(certs):
    with pytest.raises(ValueError):
        SMTPServer(key=key_pem(certs.server["a.example"]), cert=tls_pair(certs.server["mx.test"])["cert"])


def test_key_without_cert_raises(certs):
    with pytest.raises(ValueError, match="together"):
        SMTPServer(key=key_pem(certs.server["mx.test"]))


def test_bad_sni_entry_raises_at_construction(mx, tmp_path):
    with pytest.raises(ValueError):
        SMTPServer(sni_options={"a.example": {"key": tmp_path / "none.key", "cert": tmp_path / "none.crt"}}, **mx)
    with pytest.raises(TypeError):
        SMTPServer(sni_options={"a.example": {"key": b"x", "crt": b"y"}}, **mx)


# ----------------------------------------------------------------- SNI


@pytest.fixture
def sni_server(start_server, received, certs, mx):
    return start_server(
        on_data=received.on_data,
        sni_options={
            "a.example": tls_pair(certs.server["a.example"]),
            "B.Example.": {k: v.decode("ascii") for k, v in tls_pair(certs.server["b.example"]).items()},
            "*.wild.example": tls_pair(certs.server["*.wild.example"]),
        },
        **mx,
    )


def _sni_session(client, received, count):
    assert client.command("EHLO client.test")[0] == 250
    send_message(client)
    received.wait_for(count)
    return received.messages[count - 1][3]


def test_sni_exact_name(sni_server, received, certs, raw_client):
    client, served = _served_certificate(raw_client, sni_server.port, certs, "a.example")
    assert served == der(certs.server["a.example"])
    assert client.sock.getpeercert()["subjectAltName"] == (("DNS", "a.example"),)
    assert _sni_session(client, received, 1).servername == "a.example"


def test_sni_key_is_normalized(sni_server, received, certs, raw_client):
    """The sni_options key "B.Example." (upper case, trailing dot) matches b.example."""
    client, served = _served_certificate(raw_client, sni_server.port, certs, "b.example")
    assert served == der(certs.server["b.example"])
    assert _sni_session(client, received, 1).servername == "b.example"


def test_sni_name_is_matched_and_recorded_in_lower_case(sni_server, received, certs, raw_client):
    client, served = _served_certificate(raw_client, sni_server.port, certs, "A.Example")
    assert served == der(certs.server["a.example"])
    assert _sni_session(client, received, 1).servername == "a.example"


def test_sni_wildcard(sni_server, received, certs, raw_client):
    client, served = _served_certificate(raw_client, sni_server.port, certs, "x.wild.example")
    assert served == der(certs.server["*.wild.example"])
    assert client.sock.getpeercert()["subjectAltName"] == (("DNS", "*.wild.example"),)
    assert _sni_session(client, received, 1).servername == "x.wild.example"


def test_sni_wildcard_covers_one_label_only(sni_server, received, certs, raw_client):
    client, served = _served_certificate(raw_client, sni_server.port, certs, "y.x.wild.example", check_hostname=False)
    assert served == der(certs.server["mx.test"])
    assert _sni_session(client, received, 1).servername == "y.x.wild.example"


def test_sni_wildcard_does_not_cover_the_bare_domain(sni_server, certs, raw_client):
    _, served = _served_certificate(raw_client, sni_server.port, certs, "wild.example", check_hostname=False)
    assert served == der(certs.server["mx.test"])


def test_sni_unknown_name_gets_the_default(sni_server, received, certs, raw_client):
    client, served = _served_certificate(raw_client, sni_server.port, certs, "c.example", check_hostname=False)
    assert served == der(certs.server["mx.test"])
    assert _sni_session(client, received, 1).servername == "c.example"


def test_no_sni_gets_the_default(sni_server, received, certs, raw_client):
    client, served = _served_certificate(raw_client, sni_server.port, certs, None)
    assert served == der(certs.server["mx.test"])
    assert _sni_session(client, received, 1).servername is None


def test_sni_default_name(sni_server, received, certs, raw_client):
    client, served = _served_certificate(raw_client, sni_server.port, certs, "mx.test")
    assert served == der(certs.server["mx.test"])
    assert _sni_session(client, received, 1).servername == "mx.test"


def test_sni_with_implicit_tls(start_server, received, certs, mx, raw_client):
    running = start_server(
        on_data=received.on_data,
        secure=True,
        sni_options={"*.wild.example": tls_pair(certs.server["*.wild.example"])},
        **mx,
    )
    client = raw_client(running.port)
    client.sock = client_context(certs).wrap_socket(client.sock, server_hostname="Mail.Wild.Example")
    assert client.sock.getpeercert(binary_form=True) == der(certs.server["*.wild.example"])
    assert client.reply()[0] == 220
    assert _sni_session(client, received, 1).servername == "mail.wild.example"


# ----------------------------------------------------------------- rotation


def test_rotation_keeps_running_sessions_and_serves_the_new_certificate(
    start_server, received, certs, mx, raw_client, smtpgate_log
):
    running = start_server(on_data=received.on_data, **mx)
    old, served = _served_certificate(raw_client, running.port, certs)
    assert served == der(certs.server["mx.test"])
    assert old.command("EHLO client.test")[0] == 250
    plain_before = raw_client(running.port)  # connected, still in plaintext

    in_loop(running, running.server.update_secure_context, **tls_pair(certs.mx_b))

    new, served = _served_certificate(raw_client, running.port, certs)
    assert served == der(certs.mx_b)
    send_message(old)  # the session established with certificate A goes on
    received.wait_for(1)
    assert old.sock.getpeercert(binary_form=True) == der(certs.server["mx.test"])
    assert new.command("EHLO client.test")[0] == 250
    send_message(new)
    received.wait_for(2)
    starttls(plain_before, client_context(certs))  # a handshake after the update, whatever the connection's age
    assert plain_before.sock.getpeercert(binary_form=True) in (der(certs.server["mx.test"]), der(certs.mx_b))
    assert plain_before.command("EHLO client.test")[0] == 250


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"cert": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, id="bad-pem"),
        pytest.param({"cert": "/nonexistent/cert.pem"}, id="missing-file"),
        pytest.param({"key": None}, id="cert-without-key"),
        pytest.param({"min_version": "TLSv1.0"}, id="bad-min-version"),
    ],
)
def test_failing_rotation_keeps_the_current_certificate(bad, start_server, certs, mx, raw_client):
    running = start_server(**mx)
    in_loop(running, running.server.update_secure_context, **tls_pair(certs.mx_b))
    options = {**tls_pair(certs.server["a.example"]), **bad}
    with pytest.raises((ValueError, TypeError)):
        in_loop(running, running.server.update_secure_context, **options)
    client, served = _served_certificate(raw_client, running.port, certs)
    assert served == der(certs.mx_b)
    assert client.command("EHLO client.test")[0] == 250


def test_rotation_with_a_mismatched_key_fails(start_server, certs, mx, raw_client):
    running = start_server(**mx)
    with pytest.raises(ValueError):
        in_loop(
            running, running.server.update_secure_context, key=key_pem(certs.mx_b), cert=mx["cert"]
        )  # key B, cert A
    _, served = _served_certificate(raw_client, running.port, certs)
    assert served == der(certs.server["mx.test"])


def test_rotation_rejects_unknown_options(start_server, certs, mx):
    running = start_server(**mx)
    with pytest.raises(TypeError):
        in_loop(running, running.server.update_secure_context, certificate=mx["cert"])


def test_rotation_of_an_sni_entry(start_server, received, certs, mx, raw_client):
    running = start_server(
        on_data=received.on_data,
        sni_options={
            "a.example": tls_pair(certs.server["a.example"]),
            "*.wild.example": tls_pair(certs.server["*.wild.example"]),
        },
        **mx,
    )
    old, served = _served_certificate(raw_client, running.port, certs, "a.example")
    assert served == der(certs.server["a.example"])

    in_loop(running, running.server.update_secure_context, sni_options={"a.example": tls_pair(certs.a_2)})

    _, served = _served_certificate(raw_client, running.port, certs, "a.example")
    assert served == der(certs.a_2)
    _, served = _served_certificate(raw_client, running.port, certs, "mx.test")
    assert served == der(certs.server["mx.test"]), "the default certificate changed with an SNI-only update"
    # the wildcard entry was not in the new sni_options: it is gone
    _, served = _served_certificate(raw_client, running.port, certs, "x.wild.example", check_hostname=False)
    assert served == der(certs.server["mx.test"])
    assert old.command("EHLO client.test")[0] == 250
    send_message(old)
    received.wait_for(1)


def test_rotating_the_default_keeps_sni_entries(start_server, certs, mx, raw_client):
    running = start_server(sni_options={"a.example": tls_pair(certs.server["a.example"])}, **mx)
    in_loop(running, running.server.update_secure_context, **tls_pair(certs.mx_b))
    _, served = _served_certificate(raw_client, running.port, certs, "a.example")
    assert served == der(certs.server["a.example"])
    _, served = _served_certificate(raw_client, running.port, certs, "mx.test")
    assert served == der(certs.mx_b)


def test_failing_sni_rotation_keeps_the_old_entries(start_server, certs, mx, raw_client):
    running = start_server(sni_options={"a.example": tls_pair(certs.server["a.example"])}, **mx)
    bad = {"a.example": tls_pair(certs.a_2), "b.example": {"key": b"-----BEGIN PRIVATE KEY-----\n", "cert": mx["cert"]}}
    with pytest.raises(ValueError):
        in_loop(running, running.server.update_secure_context, sni_options=bad)
    _, served = _served_certificate(raw_client, running.port, certs, "a.example")
    assert served == der(certs.server["a.example"])


def test_rotation_from_the_development_certificate(start_server, certs, raw_client, smtpgate_log):
    running = start_server()
    client = raw_client(running.port)
    starttls(client, client_context(None), "mx.test")
    dev = client.sock.getpeercert(binary_form=True)
    in_loop(running, running.server.update_secure_context, **tls_pair(certs.server["mx.test"]))
    _, served = _served_certificate(raw_client, running.port, certs)
    assert served == der(certs.server["mx.test"]) != dev
    assert client.command("EHLO client.test")[0] == 250


def test_update_secure_context_is_used_by_a_verifying_client(start_server, certs, raw_client):
    """Rotation works end to end for a client that verifies: before, the development
    certificate fails verification; after, the CA-issued one passes."""
    running = start_server()
    client = raw_client(running.port)
    with pytest.raises(ssl.SSLCertVerificationError):
        starttls(client, client_context(certs))
    in_loop(running, running.server.update_secure_context, **tls_pair(certs.server["mx.test"]))
    client, served = _served_certificate(raw_client, running.port, certs)
    assert served == der(certs.server["mx.test"])


# ----------------------------------------------------------------- encrypted keys, no TLS at all


def _encrypted_key(leaf, password: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_pem(leaf), None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )


def test_encrypted_key_with_its_passphrase(start_server, received, certs, raw_client):
    leaf = certs.server["mx.test"]
    running = start_server(
        on_data=received.on_data, key=_encrypted_key(leaf, b"s3cret"), cert=tls_pair(leaf)["cert"], passphrase="s3cret"
    )
    client = raw_client(running.port)
    starttls(client, client_context(certs))
    assert client.sock.getpeercert(binary_form=True) == der(leaf)


@pytest.mark.parametrize(
    ("extra", "message"),
    [({}, "give the 'passphrase' option"), ({"passphrase": b"wrong"}, "wrong passphrase")],
    ids=["missing", "wrong"],
)
def test_encrypted_key_without_the_right_passphrase_is_a_clear_error(certs, extra, message):
    """Never an OpenSSL prompt on the terminal: a ValueError at construction."""
    leaf = certs.server["mx.test"]
    with pytest.raises(ValueError, match=message):
        SMTPServer(name="mx.test", key=_encrypted_key(leaf, b"s3cret"), cert=tls_pair(leaf)["cert"], **extra)


def test_no_development_certificate_when_starttls_is_disabled(smtpgate_log):
    server = SMTPServer(name="mx.test", disabled_commands=["STARTTLS"])
    assert not any("self-signed" in record.getMessage() for record in smtpgate_log.records)
    assert server.tls.context is not None  # still built on demand (update_secure_context, ...)


def test_rotation_of_the_top_level_options_reaches_the_sni_entries(start_server, certs, mx, raw_client):
    """SNI entries inherit what they do not set, also after update_secure_context()."""
    running = start_server(sni_options={"a.example": tls_pair(certs.server["a.example"])}, **mx)
    old_client = client_context(certs, maximum_version=ssl.TLSVersion.TLSv1_2)
    before = raw_client(running.port)
    starttls(before, old_client, "a.example")
    in_loop(running, running.server.update_secure_context, min_version="TLSv1.3")
    after = raw_client(running.port)
    assert after.reply()[0] == 220
    assert after.command("STARTTLS")[0] == 220
    with pytest.raises((ssl.SSLError, OSError)):
        old_client.wrap_socket(after.sock, server_hostname="a.example")
