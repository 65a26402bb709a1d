"""AUTH with real clients: smtplib, aiosmtplib and swaks, every mechanism."""

from __future__ import annotations

import asyncio
import json
import shutil
import smtplib
import subprocess

import aiosmtplib
import pytest
from auth_support import PASSWORD, TOKEN, USER

pytestmark = pytest.mark.timeout(30)

MESSAGE = b"Subject: auth\r\n\r\nsent after AUTH\r\n"
SMTPLIB_METHODS = ["PLAIN", "LOGIN", "CRAM-MD5"]


def smtplib_over_tls(port, context):
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.starttls(context=context)
    client.ehlo()
    return client


@pytest.mark.parametrize("method", SMTPLIB_METHODS)
def test_smtplib_login_with_each_method(auth_server, authenticator, mailbox, tls_client, method):
    running = auth_server(auth_methods=[method])
    with smtplib_over_tls(running.port, tls_client) as client:
        assert client.esmtp_features["auth"].split() == [method]
        code, text = client.login(USER, PASSWORD)
        assert (code, text) == (235, b"2.7.0 Authentication successful")
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    [request] = authenticator.requests
    assert (request.method, request.username) == (method, USER)
    if method == "CRAM-MD5":
        assert request.password is None
        assert request.challenge.startswith("<") and request.challenge.endswith("@mx.test>")
        assert request.validate_password(PASSWORD)
        assert not request.validate_password("wrong")
    else:
        assert request.password == PASSWORD
    [message] = mailbox.wait_for(1)
    assert message["user"] == {"name": USER, "method": method}
    assert message["transmission_type"] == "ESMTPSA"
    assert message["body"] == MESSAGE


def test_smtplib_login_prefers_cram_md5_when_all_are_offered(auth_server, authenticator, tls_client):
    running = auth_server()
    with smtplib_over_tls(running.port, tls_client) as client:
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"]
        client.login(USER, PASSWORD)
    assert [r.method for r in authenticator.requests] == ["CRAM-MD5"]


def test_smtplib_login_wrong_password(auth_server, authenticator, tls_client):
    running = auth_server(auth_methods=["PLAIN"])
    with smtplib_over_tls(running.port, tls_client) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as failure:
            client.login(USER, "wrong")
        assert (failure.value.smtp_code, failure.value.smtp_error) == (535, b"5.7.8 Bad username or password")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert (refused.value.smtp_code, refused.value.smtp_error) == (530, b"5.7.0 Authentication required")


def test_smtplib_xoauth2(auth_server, mailbox, tls_client):
    running = auth_server(auth_methods=["XOAUTH2"])
    with smtplib_over_tls(running.port, tls_client) as client:
        code, _ = client.auth("XOAUTH2", lambda challenge=None: f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01")
        assert code == 235
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    [message] = mailbox.wait_for(1)
    assert message["user"] == {"oauth": USER}


def test_smtplib_xoauth2_failure_gets_the_json_challenge(auth_server, authenticator, tls_client):
    running = auth_server(auth_methods=["XOAUTH2"])
    challenges = []

    def token(challenge=None):
        if challenge is not None:  # the error challenge: answer with an empty response
            challenges.append(challenge)
            return ""
        return f"user={USER}\x01auth=Bearer expired\x01\x01"

    with smtplib_over_tls(running.port, tls_client) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as failure:
            client.auth("XOAUTH2", token)
        assert (failure.value.smtp_code, failure.value.smtp_error) == (535, b"5.7.8 Error: authentication failed")
        assert client.noop()[0] == 250
    assert [json.loads(c) for c in challenges] == [
        {"status": "401", "schemes": "bearer", "scope": "https://mail.example/"}
    ]
    assert authenticator.requests[0].access_token == "expired"


@pytest.mark.parametrize("method", ["cram-md5", "plain", "login"])
def test_aiosmtplib_login_with_each_method(auth_server, authenticator, mailbox, tls_client, method):
    running = auth_server(auth_methods=[method.upper()], secure=True)

    async def send() -> None:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=running.port, use_tls=True, tls_context=tls_client, timeout=10
        )
        await client.connect()
        response = await client.login(USER, PASSWORD)
        assert (response.code, response.message) == (235, "2.7.0 Authentication successful")
        await client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        await client.quit()

    asyncio.run(asyncio.wait_for(send(), 20))
    assert [r.method for r in authenticator.requests] == [method.upper()]
    [message] = mailbox.wait_for(1)
    assert message["transmission_type"] == "ESMTPSA"


def test_aiosmtplib_xoauth2_success_and_failure(auth_server, authenticator, mailbox, tls_client):
    running = auth_server(auth_methods=["XOAUTH2"], secure=True)

    async def exchange() -> None:
        bad = aiosmtplib.SMTP(hostname="127.0.0.1", port=running.port, use_tls=True, tls_context=tls_client)
        await bad.connect(timeout=10)
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as failure:
            await bad.auth_xoauth2(USER, "revoked")
        assert (failure.value.code, failure.value.message) == (535, "5.7.8 Error: authentication failed")
        await bad.quit()

        async def tokens() -> str:
            return TOKEN

        good = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=running.port,
            use_tls=True,
            tls_context=tls_client,
            username=USER,
            oauth_token_generator=tokens,
        )
        await good.connect(timeout=10)  # logs in with XOAUTH2 on connect
        await good.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        await good.quit()

    asyncio.run(asyncio.wait_for(exchange(), 20))
    assert [(r.method, r.access_token) for r in authenticator.requests] == [("XOAUTH2", "revoked"), ("XOAUTH2", TOKEN)]
    [message] = mailbox.wait_for(1)
    assert message["user"] == {"oauth": USER}


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("swaks")
    if path is None:
        pytest.skip("swaks is not installed")
    command = [path, "--server", f"127.0.0.1:{port}", "--from", "a@example.com", "--to", "b@example.com"]
    command += ["--timeout", "10", "--helo", "client.test", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("method", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_swaks_auth_with_each_method(auth_server, authenticator, mailbox, method):
    running = auth_server(allow_insecure_auth=True)
    result = swaks(running.port, "--auth", method, "--auth-user", USER, "--auth-password", PASSWORD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  235 2.7.0 Authentication successful" in result.stdout
    assert f" -> AUTH {method}" in result.stdout
    assert [r.method for r in authenticator.requests] == [method]
    [message] = mailbox.wait_for(1)
    assert message["transmission_type"] == "ESMTPA"
    assert message["user"] == {"name": USER, "method": method}


def test_swaks_wrong_password_is_refused(auth_server, authenticator, mailbox):
    running = auth_server(allow_insecure_auth=True, auth_methods=["LOGIN"])
    result = swaks(running.port, "--auth", "LOGIN", "--auth-user", USER, "--auth-password", "nope")
    assert result.returncode != 0
    assert "<** 535 5.7.8 Bad username or password" in result.stdout
    assert mailbox.messages == []


def test_swaks_auth_over_starttls(auth_server, authenticator, mailbox):
    path = shutil.which("swaks")
    if path is None:
        pytest.skip("swaks is not installed")
    support = subprocess.run([path, "--support"], capture_output=True, text=True, timeout=30)
    if "TLS not available" in support.stdout + support.stderr:
        pytest.skip("swaks was built without TLS (Net::SSLeay missing)")
    running = auth_server()
    result = swaks(running.port, "--tls", "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD)
    assert result.returncode == 0, result.stdout + result.stderr
    [message] = mailbox.wait_for(1)
    assert message["transmission_type"] == "ESMTPSA"
