"""When AUTH is offered and required, what on_auth decides, and what AUTH changes in the
session: advertising, 538/530 refusals, the unauthenticated-command limit, failure
delays and limits, session.user, transmission_type, and logs free of credentials."""

from __future__ import annotations

import base64
import logging
import time

import pytest
from auth_support import (
    PASSWORD,
    TOKEN,
    USER,
    AsyncAuthenticator,
    Authenticator,
    b64,
    cram_md5_response,
    plain_blob,
    xoauth2_blob,
)

from smtpgate import AuthResult, SMTPError
from support import ehlo_lines, greet, starttls

pytestmark = pytest.mark.timeout(30)

OK = (235, "2.7.0 Authentication successful")
AUTH_LINE = "AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2"
AUTH_REQUIRED = (530, "5.7.0 Authentication required")


def send_message(client, mail_from="a@example.com"):
    assert client.command(f"MAIL FROM:<{mail_from}>") == (250, "2.1.0 Accepted")
    assert client.command("RCPT TO:<b@example.com>") == (250, "2.1.5 Accepted")
    assert client.command("DATA")[0] == 354
    assert client.command("Subject: x\r\n\r\nbody\r\n.") == (250, "2.6.0 OK: message queued")


# ----------------------------------------------------------------- advertising


def test_auth_is_advertised_only_inside_tls(auth_server, raw_client, tls_client):
    client = raw_client(auth_server().port)
    plain = greet(client)
    assert not any(line.startswith("AUTH") for line in ehlo_lines(plain))
    assert client.command(f"AUTH PLAIN {plain_blob()}") == (
        538,
        "5.7.11 Encryption required for requested authentication mechanism",
    )
    client.close()
    client = raw_client(auth_server().port)
    inside = starttls(client, tls_client)
    assert AUTH_LINE in ehlo_lines(inside)
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK
    # once authenticated, AUTH is no longer offered
    assert AUTH_LINE not in ehlo_lines(client.command("EHLO client.test")[1].split("\n"))


def test_allow_insecure_auth_advertises_and_accepts_in_plaintext(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True, auth_methods=["LOGIN", "PLAIN"]).port)
    assert "AUTH LOGIN PLAIN" in ehlo_lines(greet(client))
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK


def test_implicit_tls_advertises_auth(auth_server, raw_client, tls_client):
    running = auth_server(secure=True)
    client = raw_client(running.port)
    client.sock = tls_client.wrap_socket(client.sock, server_hostname="mx.test")
    assert AUTH_LINE in ehlo_lines(greet(client))
    assert client.command(f"AUTH XOAUTH2 {xoauth2_blob()}") == OK


def test_without_on_auth_there_is_no_auth(start_server, raw_client):
    client = raw_client(start_server(allow_insecure_auth=True).port)
    assert not any(line.startswith("AUTH") for line in ehlo_lines(greet(client)))
    assert client.command(f"AUTH PLAIN {plain_blob()}") == (500, "5.5.2 Error: command not recognized")
    assert client.command("MAIL FROM:<a@example.com>") == (250, "2.1.0 Accepted")


def test_disabled_auth_command(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True, disabled_commands=["AUTH"]).port)
    assert not any(line.startswith("AUTH") for line in ehlo_lines(greet(client)))
    assert client.command(f"AUTH PLAIN {plain_blob()}") == (500, "5.5.2 Error: command not recognized")
    assert client.command("MAIL FROM:<a@example.com>") == (250, "2.1.0 Accepted")


def test_needs_upgrade_refuses_auth_and_mail_before_starttls(auth_server, raw_client, tls_client):
    running = auth_server(needs_upgrade=True, allow_insecure_auth=True)
    client = raw_client(running.port)
    assert not any(line.startswith("AUTH") for line in ehlo_lines(greet(client)))
    must = (530, "5.7.0 Must issue a STARTTLS command first")
    assert client.command(f"AUTH PLAIN {plain_blob()}") == must
    assert client.command("MAIL FROM:<a@example.com>") == must
    client.close()
    client = raw_client(running.port)
    assert AUTH_LINE in ehlo_lines(starttls(client, tls_client))
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK


# ----------------------------------------------------------------- AUTH required


def test_mail_before_auth_is_refused(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True).port)
    greet(client)
    assert client.command("MAIL FROM:<a@example.com>") == AUTH_REQUIRED
    assert client.command("RCPT TO:<b@example.com>") == AUTH_REQUIRED
    assert client.command("DATA") == AUTH_REQUIRED
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK
    send_message(client)


def test_auth_required_message(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True, auth_required_message="Log in first, please").port)
    greet(client)
    assert client.command("MAIL FROM:<a@example.com>") == (530, "5.7.0 Log in first, please")


def test_auth_optional_lets_anonymous_clients_send(auth_server, raw_client, mailbox):
    client = raw_client(auth_server(allow_insecure_auth=True, auth_optional=True).port)
    assert "AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2" in ehlo_lines(greet(client))
    send_message(client)
    [message] = mailbox.wait_for(1)
    assert message["user"] is None
    assert message["transmission_type"] == "ESMTP"


def test_too_many_unauthenticated_commands(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True, max_allowed_unauthenticated_commands=3).port)
    greet(client)  # EHLO is the first command
    assert client.command("NOOP") == (250, "2.0.0 OK")
    assert client.command("NOOP") == (250, "2.0.0 OK")
    assert client.command("NOOP") == (421, "4.7.0 mx.test Error: too many unauthenticated commands")
    assert client.is_closed()


def test_auth_commands_do_not_count_and_authenticating_stops_the_count(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True, max_allowed_unauthenticated_commands=3).port)
    greet(client)
    for _ in range(4):
        assert client.command("AUTH LOGIN")[0] == 334
        assert client.command("*")[0] == 501
    assert client.command("NOOP") == (250, "2.0.0 OK")
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK
    for _ in range(5):
        assert client.command("NOOP") == (250, "2.0.0 OK")


def test_unauthenticated_command_limit_disabled_with_false(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True, max_allowed_unauthenticated_commands=False).port)
    greet(client)
    for _ in range(30):
        assert client.command("NOOP") == (250, "2.0.0 OK")


def test_unauthenticated_command_limit_does_not_apply_when_auth_is_optional(auth_server, raw_client):
    client = raw_client(
        auth_server(allow_insecure_auth=True, auth_optional=True, max_allowed_unauthenticated_commands=2).port
    )
    greet(client)
    for _ in range(5):
        assert client.command("NOOP") == (250, "2.0.0 OK")


# ----------------------------------------------------------------- on_auth decisions


@pytest.mark.parametrize("kind", [Authenticator, AsyncAuthenticator], ids=["sync", "async"])
def test_sync_and_async_on_auth(auth_server, raw_client, mailbox, kind):
    checker = kind()
    client = raw_client(auth_server(on_auth=checker, allow_insecure_auth=True).port)
    greet(client)
    assert client.command(f"AUTH PLAIN {plain_blob(password='wrong')}") == (535, "5.7.8 Bad username or password")
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK
    send_message(client)
    [message] = mailbox.wait_for(1)
    assert message["user"] == {"name": USER, "method": "PLAIN"}
    assert [r.password for r in checker.requests] == ["wrong", PASSWORD]


def on_auth_returning(value):
    def on_auth(auth, session):
        return value

    return on_auth


@pytest.mark.parametrize(
    ("decision", "reply"),
    [
        (AuthResult(user="u-42"), OK),
        (AuthResult(user="u-42", message="Welcome back"), (235, "2.7.0 Welcome back")),
        (None, (535, "5.7.8 Error: authentication failed")),
        (False, (535, "5.7.8 Error: authentication failed")),
        (True, (535, "5.7.8 Error: authentication failed")),
        (SMTPError(535, "Bad username or password"), (535, "5.7.8 Bad username or password")),
        (SMTPError(454, "Temporary authentication failure"), (454, "4.7.0 Temporary authentication failure")),
        (SMTPError(535, "Account disabled", enhanced="5.7.1"), (535, "5.7.1 Account disabled")),
        (SMTPError(534, "Authentication mechanism is too weak"), (534, "5.7.9 Authentication mechanism is too weak")),
        (RuntimeError("backend down"), (451, "4.3.0 Error: internal server error")),
    ],
    ids=["accept", "accept-message", "none", "false", "true", "535", "454", "enhanced", "534", "exception"],
)
def test_on_auth_decisions(start_server, raw_client, decision, reply):
    if isinstance(decision, BaseException):

        def on_auth(auth, session):
            raise decision

    else:
        on_auth = on_auth_returning(decision)
    running = start_server(on_auth=on_auth, allow_insecure_auth=True, auth_failure_delay=0)
    client = raw_client(running.port)
    greet(client)
    assert client.command(f"AUTH PLAIN {plain_blob()}") == reply
    if reply[0] == 235:
        assert client.command("MAIL FROM:<a@example.com>") == (250, "2.1.0 Accepted")
    else:
        assert client.command("MAIL FROM:<a@example.com>") == AUTH_REQUIRED


def test_session_user_is_what_on_auth_returned(start_server, raw_client, mailbox):
    account = object()
    seen = []

    async def on_auth(auth, session):
        seen.append(session.user)
        return AuthResult(user=account)

    def on_mail_from(address, session):
        seen.append(session.user)

    client = raw_client(
        start_server(on_auth=on_auth, on_mail_from=on_mail_from, on_data=mailbox.on_data, allow_insecure_auth=True).port
    )
    greet(client)
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK
    send_message(client)
    [message] = mailbox.wait_for(1)
    assert seen == [None, account]
    assert message["user"] is account


def test_auth_result_with_user_none_keeps_the_username(start_server, raw_client, mailbox):
    client = raw_client(
        start_server(
            on_auth=on_auth_returning(AuthResult(user=None)), on_data=mailbox.on_data, allow_insecure_auth=True
        ).port
    )
    greet(client)
    assert client.command(f"AUTH LOGIN {b64(USER)}")[0] == 334
    assert client.command(b64(PASSWORD)) == OK
    send_message(client)
    assert mailbox.wait_for(1)[0]["user"] == USER


def test_the_user_survives_rset_and_a_new_ehlo(auth_server, raw_client, mailbox):
    client = raw_client(auth_server(allow_insecure_auth=True).port)
    greet(client)
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK
    assert client.command("RSET")[0] == 250
    assert client.command("EHLO again.test")[0] == 250
    send_message(client)
    [message] = mailbox.wait_for(1)
    assert message["user"] == {"name": USER, "method": "PLAIN"}
    assert message["transmission_type"] == "ESMTPA"


# ----------------------------------------------------------------- transmission type


def test_transmission_type_esmtpa_in_plaintext(auth_server, raw_client, mailbox):
    client = raw_client(auth_server(allow_insecure_auth=True).port)
    greet(client)
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK
    send_message(client)
    assert mailbox.wait_for(1)[0]["transmission_type"] == "ESMTPA"


def test_transmission_type_esmtpsa_inside_tls(auth_server, raw_client, mailbox, tls_client):
    client = raw_client(auth_server().port)
    starttls(client, tls_client)
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK
    send_message(client)
    assert mailbox.wait_for(1)[0]["transmission_type"] == "ESMTPSA"


def test_transmission_type_is_set_when_auth_succeeds(auth_server, raw_client, authenticator):
    """on_auth sees the session before the change; a later handler sees ESMTPA."""
    types = []

    def on_mail_from(address, session):
        types.append(session.transmission_type)

    client = raw_client(auth_server(allow_insecure_auth=True, on_mail_from=on_mail_from).port)
    greet(client)
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert types == ["ESMTPA"]


# ----------------------------------------------------------------- failures


def test_max_auth_failures_closes_the_connection(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True, max_auth_failures=3).port)
    greet(client)
    assert client.command(f"AUTH PLAIN {plain_blob(password='1')}") == (535, "5.7.8 Bad username or password")
    assert client.command(f"AUTH XOAUTH2 {xoauth2_blob(token='2')}")[0] == 334
    assert client.command("") == (535, "5.7.8 Error: authentication failed")
    assert client.command("AUTH LOGIN")[0] == 334
    assert client.command(b64(USER))[0] == 334
    assert client.command(b64("3")) == (421, "4.7.0 mx.test Error: too many authentication failures")
    assert client.is_closed()


def test_syntax_errors_and_cancels_are_not_auth_failures(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True, max_auth_failures=1).port)
    greet(client)
    for _ in range(3):
        assert client.command("AUTH PLAIN !!")[0] == 501
        assert client.command("AUTH CRAM-MD5")[0] == 334
        assert client.command("*")[0] == 501
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK


def test_max_auth_failures_of_one(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True, max_auth_failures=1).port)
    greet(client)
    assert client.command(f"AUTH PLAIN {plain_blob(password='x')}") == (
        421,
        "4.7.0 mx.test Error: too many authentication failures",
    )
    assert client.is_closed()


def test_auth_failure_delay_holds_the_failure_reply(auth_server, raw_client):
    """The failure reply waits at least auth_failure_delay (a lower bound only)."""
    client = raw_client(auth_server(allow_insecure_auth=True, auth_failure_delay=0.3).port)
    greet(client)
    started = time.monotonic()
    assert client.command(f"AUTH PLAIN {plain_blob(password='x')}") == (535, "5.7.8 Bad username or password")
    assert time.monotonic() - started >= 0.25
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK


def test_auth_failure_delay_and_pipelined_commands(auth_server, raw_client):
    """Commands pipelined behind a failing AUTH are answered after its reply, in order."""
    client = raw_client(auth_server(allow_insecure_auth=True, auth_failure_delay=0.1).port)
    greet(client)
    client.send(f"AUTH PLAIN {plain_blob(password='x')}\r\nNOOP\r\nMAIL FROM:<a@example.com>\r\n")
    assert client.replies(3) == [(535, "5.7.8 Bad username or password"), (250, "2.0.0 OK"), AUTH_REQUIRED]


def test_socket_closed_during_the_failure_delay(auth_server, raw_client, authenticator):
    """A client that leaves while its failure is being delayed ends the session cleanly."""
    closed = []
    running = auth_server(allow_insecure_auth=True, auth_failure_delay=0.3, on_close=closed.append)
    client = raw_client(running.port)
    greet(client)
    client.send(f"AUTH PLAIN {plain_blob(password='x')}\r\n")
    deadline = time.monotonic() + 5
    while not authenticator.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    client.close()
    deadline = time.monotonic() + 5
    while not closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(closed) == 1


# ----------------------------------------------------------------- logs


def test_credentials_never_appear_in_logs(auth_server, raw_client, tls_client, debug_log):
    def on_auth_failing_loudly(auth, session):
        if auth.method == "PLAIN" and auth.authzid == "crash":
            raise RuntimeError(f"backend down while checking {auth!r}")
        if auth.method == "LOGIN" and auth.password == "warn":
            return f"not an AuthResult for {auth!r}"
        return Authenticator().check(auth, session)

    running = auth_server(allow_insecure_auth=True, max_auth_failures=50, on_auth=on_auth_failing_loudly)
    secrets_sent: list[str] = [PASSWORD, TOKEN, b64(PASSWORD), plain_blob(), xoauth2_blob(), b64(TOKEN)]
    client = raw_client(running.port)
    greet(client)
    # PLAIN: success and failure, both forms
    wrong = plain_blob(password=PASSWORD + "-wrong")
    secrets_sent.append(wrong)
    assert client.command(f"AUTH PLAIN {wrong}")[0] == 535
    crash = plain_blob(authzid="crash")
    secrets_sent.append(crash)
    assert client.command(f"AUTH PLAIN {crash}")[0] == 451
    # LOGIN: a handler returning a non-AuthResult (logged as a warning)
    assert client.command("AUTH LOGIN")[0] == 334
    assert client.command(b64(USER))[0] == 334
    assert client.command(b64("warn"))[0] == 535
    # CRAM-MD5 with the wrong and the right secret
    _, challenge = client.command("AUTH CRAM-MD5")
    bad_digest = cram_md5_response(challenge, password="nope")
    secrets_sent.append(bad_digest)
    assert client.command(bad_digest)[0] == 535
    _, challenge = client.command("AUTH CRAM-MD5")
    digest = cram_md5_response(challenge)
    secrets_sent += [digest, base64.b64decode(digest).decode().split()[1]]
    assert client.command(digest) == OK
    client.command("QUIT")
    client.close()
    # XOAUTH2 failure and success, then LOGIN success and a message
    client = raw_client(running.port)
    greet(client)
    expired = xoauth2_blob(token="expired-" + TOKEN)
    secrets_sent.append(expired)
    assert client.command(f"AUTH XOAUTH2 {expired}")[0] == 334
    assert client.command("")[0] == 535
    assert client.command(f"AUTH XOAUTH2 {xoauth2_blob()}") == OK
    send_message(client)
    client.command("QUIT")
    client.close()
    client = raw_client(running.port)
    starttls(client, tls_client)
    assert client.command(f"AUTH LOGIN {b64(USER)}")[0] == 334
    assert client.command(b64(PASSWORD)) == OK
    client.command("QUIT")
    client.close()
    running.stop(timeout=10)
    records = [r for r in debug_log.records if r.name.startswith("smtpgate")]
    assert any("authentication failed" in r.getMessage() for r in records)
    assert any(r.levelno == logging.DEBUG for r in records)
    text = debug_log.text + "\n".join(
        r.getMessage() + repr(r.args) + (debug_log.handler.format(r) if r.exc_info else "") for r in records
    )
    for secret in secrets_sent:
        assert secret not in text, f"a credential reached the logs: {secret!r}"


# ----------------------------------------------------------------- more session rules


def test_starttls_forgets_a_plaintext_authentication(auth_server, raw_client, tls_client):
    client = raw_client(auth_server(allow_insecure_auth=True).port)
    greet(client)
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK
    assert client.command("STARTTLS") == (220, "2.0.0 Ready to start TLS")
    client.sock = tls_client.wrap_socket(client.sock, server_hostname="mx.test")
    code, text = client.command("EHLO client.test")
    assert AUTH_LINE in ehlo_lines(text)
    assert client.command("MAIL FROM:<a@example.com>") == AUTH_REQUIRED


def test_auth_replies_without_enhanced_status_codes(auth_server, raw_client):
    client = raw_client(auth_server(allow_insecure_auth=True, hide_enhancedstatuscodes=True).port)
    greet(client)
    assert client.command(f"AUTH PLAIN {plain_blob(password='x')}") == (535, "Bad username or password")
    assert client.command("AUTH FOO") == (504, "Error: unrecognized authentication mechanism")
    assert client.command("AUTH LOGIN") == (334, b64("Username:"))
    assert client.command("*") == (501, "Authentication cancelled")
    assert client.command("MAIL FROM:<a@example.com>") == (530, "Authentication required")
    assert client.command(f"AUTH PLAIN {plain_blob()}") == (235, "Authentication successful")


def test_auth_replies_without_enhanced_codes_inside_tls(auth_server, raw_client, tls_client):
    client = raw_client(auth_server(hide_enhancedstatuscodes=True).port)
    greet(client)
    assert client.command(f"AUTH PLAIN {plain_blob()}") == (
        538,
        "Encryption required for requested authentication mechanism",
    )


@pytest.mark.parametrize(("secure", "expected"), [(False, "LMTPA"), (True, "LMTPSA")])
def test_lmtp_transmission_types(auth_server, raw_client, tls_client, mailbox, secure, expected):
    client = raw_client(auth_server(lmtp=True, allow_insecure_auth=True).port)
    if secure:
        starttls(client, tls_client, hello="LHLO client.test")
    else:
        greet(client, "LHLO client.test")
    assert client.command(f"AUTH PLAIN {plain_blob()}") == OK
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert client.command("RCPT TO:<b@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    assert client.command("x\r\n.") == (250, "2.6.0 <b@example.com> OK: message accepted")
    assert mailbox.wait_for(1)[0]["transmission_type"] == expected


def test_client_leaving_mid_exchange(auth_server, raw_client, authenticator):
    closed = []
    client = raw_client(auth_server(allow_insecure_auth=True, on_close=closed.append).port)
    greet(client)
    assert client.command("AUTH LOGIN") == (334, b64("Username:"))
    client.send(b64(USER) + "\r\n")
    assert client.reply() == (334, b64("Password:"))
    client.close()
    deadline = time.monotonic() + 5
    while not closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(closed) == 1
    assert closed[0].user is None
    assert authenticator.requests == []


def test_on_auth_timeout(start_server, raw_client):
    import asyncio

    async def slow(auth, session):
        await asyncio.sleep(5)

    client = raw_client(start_server(on_auth=slow, allow_insecure_auth=True, handler_timeout=0.2).port)
    greet(client)
    assert client.command(f"AUTH PLAIN {plain_blob()}") == (
        451,
        "4.3.0 Error: timeout while processing, try again later",
    )
    assert client.command("MAIL FROM:<a@example.com>") == AUTH_REQUIRED
