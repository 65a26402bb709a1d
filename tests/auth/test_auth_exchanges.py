"""AUTH byte by byte: initial-response and challenge forms of every mechanism, and the
replies to cancelled, malformed and out-of-place exchanges."""

from __future__ import annotations

import base64
import json

import pytest
from auth_support import PASSWORD, TOKEN, USER, b64, cram_md5_response, plain_blob, xoauth2_blob

from support import greet, starttls

pytestmark = pytest.mark.timeout(30)

OK = (235, "2.7.0 Authentication successful")
CANCELLED = (501, "5.7.0 Authentication cancelled")
BAD_BASE64 = (501, "5.5.2 Error: invalid base64 data")
USERNAME_PROMPT = (334, b64("Username:"))
PASSWORD_PROMPT = (334, b64("Password:"))


@pytest.fixture
def session(auth_server, raw_client):
    """A greeted raw client on a server that allows AUTH in plaintext."""
    running = auth_server(allow_insecure_auth=True, max_auth_failures=10)
    client = raw_client(running.port)
    greet(client)
    return client


def test_plain_initial_response(session, authenticator):
    assert session.command(f"AUTH PLAIN {plain_blob()}") == OK
    [request] = authenticator.requests
    assert (request.method, request.username, request.password, request.authzid) == ("PLAIN", USER, PASSWORD, None)


def test_plain_challenge_form_sends_an_empty_334(session, authenticator):
    session.send("AUTH PLAIN\r\n")
    assert session.read_line() == b"334 "
    assert session.command(plain_blob()) == OK
    assert authenticator.requests[0].password == PASSWORD


def test_plain_with_an_authorization_identity(session, authenticator):
    assert session.command(f"AUTH PLAIN {plain_blob(authzid='boss@example.com')}") == OK
    assert authenticator.requests[0].authzid == "boss@example.com"
    assert authenticator.requests[0].username == USER


def test_plain_with_the_user_only_as_authzid(session, authenticator):
    """Some clients send "user NUL NUL password"; the user is taken from the authzid."""
    blob = b64(USER + "\0\0" + PASSWORD)
    assert session.command(f"AUTH PLAIN {blob}") == OK
    assert authenticator.requests[0].username == USER


def test_mechanism_name_is_case_insensitive(session):
    assert session.command(f"auth plain {plain_blob()}") == OK


def test_login_initial_response_with_the_username(session, authenticator):
    assert session.command(f"AUTH LOGIN {b64(USER)}") == PASSWORD_PROMPT
    assert session.command(b64(PASSWORD)) == OK
    assert (authenticator.requests[0].method, authenticator.requests[0].password) == ("LOGIN", PASSWORD)


def test_login_challenge_form(session, authenticator):
    assert session.command("AUTH LOGIN") == USERNAME_PROMPT
    assert session.command(b64(USER)) == PASSWORD_PROMPT
    assert session.command(b64(PASSWORD)) == OK
    assert authenticator.requests[0].username == USER


def test_cram_md5_challenge_and_validate_password(session, authenticator):
    code, challenge = session.command("AUTH CRAM-MD5")
    assert code == 334
    decoded = base64.b64decode(challenge).decode()
    assert decoded.startswith("<") and decoded.endswith("@mx.test>")
    assert session.command(cram_md5_response(challenge)) == OK
    [request] = authenticator.requests
    assert (request.method, request.username, request.password) == ("CRAM-MD5", USER, None)
    assert request.challenge == decoded
    assert request.validate_password(PASSWORD) is True
    assert request.validate_password(PASSWORD + "x") is False


def test_cram_md5_challenges_are_unique(session, raw_client):
    first = session.command("AUTH CRAM-MD5")[1]
    session.command("*")
    second = session.command("AUTH CRAM-MD5")[1]
    assert first != second


def test_cram_md5_wrong_digest_is_refused(session):
    _, challenge = session.command("AUTH CRAM-MD5")
    assert session.command(cram_md5_response(challenge, password="guess")) == (
        535,
        "5.7.8 Bad username or password",
    )


def test_cram_md5_refuses_an_initial_response(session):
    assert session.command(f"AUTH CRAM-MD5 {b64('x')}") == (
        501,
        "5.5.2 Error: CRAM-MD5 does not take an initial response",
    )


def test_cram_md5_malformed_response(session):
    session.command("AUTH CRAM-MD5")
    assert session.command(b64("no-digest-here")) == (501, "5.5.2 Error: CRAM-MD5 needs 'username digest'")


def test_xoauth2_initial_response(session, authenticator):
    assert session.command(f"AUTH XOAUTH2 {xoauth2_blob()}") == OK
    [request] = authenticator.requests
    assert (request.method, request.username, request.access_token, request.password) == (
        "XOAUTH2",
        USER,
        TOKEN,
        None,
    )


def test_xoauth2_challenge_form(session, authenticator):
    assert session.command("AUTH XOAUTH2") == (334, "")
    assert session.command(xoauth2_blob()) == OK


def test_xoauth2_failure_sends_the_json_error_then_the_final_reply(session, authenticator):
    code, challenge = session.command(f"AUTH XOAUTH2 {xoauth2_blob(token='expired')}")
    assert code == 334
    assert json.loads(base64.b64decode(challenge)) == {
        "status": "401",
        "schemes": "bearer",
        "scope": "https://mail.example/",
    }
    assert session.command("") == (535, "5.7.8 Error: authentication failed")
    assert session.command("NOOP") == (250, "2.0.0 OK")
    # the session is still unauthenticated and may try again
    assert session.command(f"AUTH XOAUTH2 {xoauth2_blob()}") == OK


def test_xoauth2_failure_with_the_dummy_response_clients_send(session):
    """RFC 7628 clients answer the error challenge with base64 of ^A ("AQ==")."""
    assert session.command(f"AUTH XOAUTH2 {xoauth2_blob(token='bad')}")[0] == 334
    assert session.command("AQ==") == (535, "5.7.8 Error: authentication failed")


def test_xoauth2_malformed_data(session):
    assert session.command(f"AUTH XOAUTH2 {b64('user=x')}") == (
        501,
        "5.5.2 Error: XOAUTH2 needs user= and auth=Bearer <token>",
    )


@pytest.mark.parametrize("method", ["PLAIN", "LOGIN", "XOAUTH2"])
def test_equals_sign_is_an_empty_initial_response(session, authenticator, method):
    """ "=" means an empty initial response (RFC 4954): no mechanism here accepts empty
    credentials, so it is a 501 and the handler is not called."""
    code, text = session.command(f"AUTH {method} =")
    assert code == 501
    assert (
        text
        == {
            "PLAIN": "5.5.2 Error: PLAIN needs authzid NUL username NUL password",
            "LOGIN": "5.5.2 Error: empty username",
            "XOAUTH2": "5.5.2 Error: XOAUTH2 needs user= and auth=Bearer <token>",
        }[method]
    )
    assert authenticator.requests == []
    assert session.command(f"AUTH PLAIN {plain_blob()}") == OK


@pytest.mark.parametrize(
    "steps",
    [
        ["AUTH PLAIN"],
        ["AUTH LOGIN"],
        [f"AUTH LOGIN {b64(USER)}"],
        ["AUTH LOGIN", b64(USER)],
        ["AUTH CRAM-MD5"],
        ["AUTH XOAUTH2"],
    ],
    ids=["plain", "login-username", "login-password-after-ir", "login-password", "cram-md5", "xoauth2"],
)
def test_star_cancels_the_exchange(session, authenticator, steps):
    for step in steps:
        assert session.command(step)[0] == 334
    assert session.command("*") == CANCELLED
    assert authenticator.requests == []
    assert session.command("NOOP") == (250, "2.0.0 OK")
    assert session.command(f"AUTH PLAIN {plain_blob()}") == OK


def test_invalid_base64_in_the_initial_response(session):
    assert session.command("AUTH PLAIN not*base64!") == BAD_BASE64
    assert session.command("AUTH PLAIN AGFsaWN") == BAD_BASE64  # bad padding


def test_invalid_base64_in_a_challenge_response(session, authenticator):
    session.command("AUTH LOGIN")
    assert session.command("%%%") == BAD_BASE64
    assert session.command("NOOP") == (250, "2.0.0 OK")
    assert authenticator.requests == []


def test_unknown_mechanism(session):
    assert session.command("AUTH GSSAPI") == (504, "5.5.4 Error: unrecognized authentication mechanism")


def test_mechanism_not_in_auth_methods_is_unknown(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True, auth_methods=["PLAIN"]).port)
    greet(client)
    assert client.command("AUTH LOGIN") == (504, "5.5.4 Error: unrecognized authentication mechanism")
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK


@pytest.mark.parametrize("line", ["AUTH", "AUTH PLAIN a b"])
def test_auth_syntax_errors(session, line):
    assert session.command(line) == (501, "5.5.4 Error: syntax: AUTH mechanism [initial-response]")


def test_auth_after_success(session):
    assert session.command(f"AUTH PLAIN {plain_blob()}") == OK
    assert session.command(f"AUTH PLAIN {plain_blob()}") == (503, "5.5.1 Error: already authenticated")
    assert session.command("AUTH LOGIN") == (503, "5.5.1 Error: already authenticated")


def test_auth_inside_a_mail_transaction(auth_server, raw_client, authenticator):
    client = raw_client(auth_server(allow_insecure_auth=True, auth_optional=True).port)
    greet(client)
    assert client.command("MAIL FROM:<a@example.com>") == (250, "2.1.0 Accepted")
    assert client.command(f"AUTH PLAIN {plain_blob()}") == (
        503,
        "5.5.1 Error: AUTH not allowed during a mail transaction",
    )
    assert client.command("RSET") == (250, "2.0.0 Flushed")
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK


def test_auth_before_ehlo(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True).port)
    assert client.reply()[0] == 220
    assert client.command(f"AUTH PLAIN {plain_blob()}") == (503, "5.5.1 Error: send HELO/EHLO first")


def test_exchange_inside_tls(auth_server, raw_client, tls_client, authenticator):
    client = raw_client(auth_server().port)
    starttls(client, tls_client)
    assert client.command("AUTH LOGIN") == USERNAME_PROMPT
    assert client.command(b64(USER)) == PASSWORD_PROMPT
    assert client.command(b64(PASSWORD)) == OK
    assert authenticator.sessions[0].secure is True


def test_pipelined_auth_and_mail(session, mailbox):
    """PIPELINING: AUTH with an initial response may be followed by MAIL in one packet."""
    session.send(f"AUTH PLAIN {plain_blob()}\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    assert session.replies(3) == [OK, (250, "2.1.0 Accepted"), (250, "2.1.5 Accepted")]
