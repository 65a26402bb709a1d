"""The AUTH pieces users touch directly: the auth_methods option, AuthRequest, AuthResult
and XOAuth2Error."""

from __future__ import annotations

import json

import pytest
from auth_support import PASSWORD, USER, b64

from smtpgate import AuthRequest, SMTPServer, XOAuth2Error
from support import greet


@pytest.mark.parametrize("methods", [["plain", " login "], ("CRAM-MD5",), ["XOAUTH2", "PLAIN", "xoauth2"]])
def test_auth_methods_are_normalised(methods):
    expected = tuple(dict.fromkeys(m.strip().upper() for m in methods))
    assert SMTPServer(auth_methods=methods).options.auth_methods == expected


@pytest.mark.parametrize(
    ("methods", "error"),
    [
        (["GSSAPI"], ValueError),
        ([], ValueError),
        ("PLAIN", TypeError),
        ([1], TypeError),
    ],
)
def test_bad_auth_methods_fail_at_construction(methods, error):
    with pytest.raises(error):
        SMTPServer(auth_methods=methods)


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("max_auth_failures", 0, ValueError),
        ("auth_failure_delay", -1, ValueError),
        ("max_allowed_unauthenticated_commands", 0, ValueError),
        ("max_allowed_unauthenticated_commands", True, TypeError),
        ("allow_insecure_auth", "yes", TypeError),
        ("auth_required_message", "two\r\nlines", ValueError),
    ],
)
def test_bad_auth_options_fail_at_construction(option, value, error):
    with pytest.raises(error):
        SMTPServer(**{option: value})


def test_auth_methods_order_is_the_advertised_order(start_server, raw_client):
    running = start_server(
        on_auth=lambda auth, session: None, allow_insecure_auth=True, auth_methods=["XOAUTH2", "CRAM-MD5", "LOGIN"]
    )
    client = raw_client(running.port)
    assert "AUTH XOAUTH2 CRAM-MD5 LOGIN" in greet(client)


def test_auth_request_repr_hides_secrets():
    request = AuthRequest("PLAIN", USER, password=PASSWORD, access_token="tok", challenge_response="abc")
    assert repr(request) == f"AuthRequest(method='PLAIN', username={USER!r})"
    assert PASSWORD not in str(request)


def test_validate_password_for_plain_and_login():
    for method in ("PLAIN", "LOGIN"):
        request = AuthRequest(method, USER, password=PASSWORD)
        assert request.validate_password(PASSWORD) is True
        assert request.validate_password(PASSWORD.encode()) is True
        assert request.validate_password("other") is False
    assert AuthRequest("XOAUTH2", USER, access_token="t").validate_password("t") is False


def test_xoauth2_error_challenge():
    assert json.loads(XOAuth2Error().challenge) == {"status": "401", "schemes": "bearer"}
    error = XOAuth2Error(454, "Temporary failure", status="503", scope="mail")
    assert json.loads(error.challenge) == {"status": "503", "schemes": "bearer", "scope": "mail"}
    assert (error.code, error.message) == (454, "Temporary failure")


def test_xoauth2_error_with_a_temporary_code(start_server, raw_client):
    def on_auth(auth, session):
        raise XOAuth2Error(454, "Temporary authentication failure", status="503")

    client = raw_client(
        start_server(on_auth=on_auth, allow_insecure_auth=True, auth_methods=["XOAUTH2"], auth_failure_delay=0).port
    )
    greet(client)
    code, challenge = client.command(f"AUTH XOAUTH2 {b64('user=u' + chr(1) + 'auth=Bearer t' + chr(1) * 2)}")
    assert code == 334
    assert challenge == b64('{"status":"503","schemes":"bearer"}')
    assert client.command("") == (454, "4.7.0 Temporary authentication failure")


def test_xoauth2_error_for_another_mechanism_is_a_plain_failure(start_server, raw_client):
    """XOAuth2Error raised for a PLAIN attempt is answered directly, without a 334."""

    def on_auth(auth, session):
        raise XOAuth2Error()

    running = start_server(on_auth=on_auth, allow_insecure_auth=True, auth_failure_delay=0)
    client = raw_client(running.port)
    greet(client)
    assert client.command(f"AUTH PLAIN {b64(chr(0) + USER + chr(0) + PASSWORD)}") == (
        535,
        "5.7.8 Error: authentication failed",
    )
