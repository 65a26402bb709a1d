"""Handlers: refusals with SMTPError, unexpected exceptions, sync and async styles, subclasses."""

from __future__ import annotations

import asyncio
import smtplib

import pytest
from server_support import ehlo, envelope

from smtpgate import SMTPError, SMTPServer
from support import Recorder


def refuse(error):
    def handler(*args):
        raise error

    return handler


def as_style(handler, style):
    """``handler`` as a plain function, a coroutine that suspends first, or one that never
    suspends (on_data then finishes in the server's read callback)."""
    if style == "sync":
        return handler

    async def wrapped(*args):
        await asyncio.sleep(0)
        return handler(*args)

    async def at_once(*args):
        return handler(*args)

    return wrapped if style == "async" else at_once


STYLES = pytest.mark.parametrize("style", ["sync", "async", "async-now"])


@STYLES
def test_on_connect_refusal(start_server, raw_client, style):
    closes = Recorder()
    running = start_server(
        on_connect=as_style(refuse(SMTPError(554, "No service for you")), style), on_close=closes.add
    )
    client = raw_client(running.port)
    assert client.reply() == (554, "5.6.0 No service for you")
    assert client.is_closed()
    assert len(closes.wait_for(1)) == 1


@STYLES
def test_on_connect_421_refusal(start_server, raw_client, style):
    running = start_server(on_connect=as_style(refuse(SMTPError(421, "Busy, try later")), style))
    client = raw_client(running.port)
    assert client.reply() == (421, "4.4.2 Busy, try later")
    assert client.is_closed()


@STYLES
def test_on_connect_exception_is_421_and_close(start_server, raw_client, style):
    errors = Recorder()
    server = SMTPServer(
        name="mx.test", disable_reverse_lookup=True, on_connect=as_style(refuse(RuntimeError("bug")), style)
    )
    server.on("error", lambda error, session: errors.add(error))
    running = start_server(server)
    client = raw_client(running.port)
    assert client.reply() == (421, "4.3.0 mx.test Error: internal server error")
    assert client.is_closed()
    assert isinstance(errors.wait_for(1)[0], RuntimeError)


@STYLES
def test_on_connect_accepts_and_sees_the_session(start_server, raw_client, style):
    seen = Recorder()
    running = start_server(on_connect=as_style(lambda session: seen.add(session.remote_address), style))
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    assert seen.items == ["127.0.0.1"]


@STYLES
@pytest.mark.parametrize(
    ("error", "reply"),
    [
        (SMTPError(550, "Sender blocked"), (550, "5.7.1 Sender blocked")),
        (SMTPError(553, "Bad sender"), (553, "5.1.8 Bad sender")),
        (SMTPError(451, "Greylisted"), (451, "4.3.0 Greylisted")),
        (SMTPError(550, "Custom", enhanced="5.7.26"), (550, "5.7.26 Custom")),
        (SMTPError(550, "5.7.27 From the text"), (550, "5.7.27 From the text")),
        (SMTPError(450), (450, "4.2.1 Error")),
    ],
)
def test_on_mail_from_refusal(start_server, raw_client, style, error, reply):
    running = start_server(on_mail_from=as_style(refuse(error), style))
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<a@example.com>") == reply
    assert client.command("RCPT TO:<b@example.com>") == (503, "5.5.1 Error: need MAIL command")


@STYLES
@pytest.mark.parametrize(
    ("error", "reply"),
    [
        (SMTPError(550, "No such user"), (550, "5.1.1 No such user")),
        (SMTPError(553, "Not here"), (553, "5.1.3 Not here")),
        (SMTPError(452, "Mailbox full"), (452, "4.2.2 Mailbox full")),
        (SMTPError(550, "Relaying denied", enhanced="5.7.1"), (550, "5.7.1 Relaying denied")),
    ],
)
def test_on_rcpt_to_refusal(start_server, raw_client, received, style, error, reply):
    def handler(address, session):
        if address.address.startswith("bad"):
            raise error

    running = start_server(on_rcpt_to=as_style(handler, style), on_data=received.on_data)
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert client.command("RCPT TO:<bad@example.com>") == reply
    assert client.command("RCPT TO:<good@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    assert client.command("x\r\n.")[0] == 250
    received.wait_for(1)
    assert received.messages[0][1] == ["good@example.com"]


@STYLES
@pytest.mark.parametrize(
    ("error", "reply"),
    [
        (SMTPError(554, "Spam"), (554, "5.6.0 Spam")),
        (SMTPError(552, "Too big for me"), (552, "5.3.4 Too big for me")),
        (SMTPError(451, "Try later"), (451, "4.3.0 Try later")),
        (SMTPError(550, "Virus", enhanced="5.7.1"), (550, "5.7.1 Virus")),
    ],
)
def test_on_data_refusal(start_server, raw_client, style, error, reply):
    running = start_server(on_data=as_style(refuse(error), style))
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    assert client.command("body\r\n.") == reply
    assert client.command("NOOP")[0] == 250


def test_on_data_421_closes(start_server, raw_client):
    running = start_server(on_data=refuse(SMTPError(421, "Going away")))
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    assert client.command("body\r\n.") == (421, "4.4.2 Going away")
    assert client.is_closed()


@STYLES
@pytest.mark.parametrize("phase", ["on_mail_from", "on_rcpt_to", "on_data"])
def test_handler_exception_is_451_and_server_keeps_serving(start_server, raw_client, received, style, phase):
    errors = Recorder()
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("oops")

    options = {phase: as_style(flaky, style)}
    if phase != "on_data":
        options["on_data"] = received.on_data
    server = SMTPServer(name="mx.test", disable_reverse_lookup=True, **options)
    server.on("error", lambda error, session: errors.add(error))
    running = start_server(server)
    client = raw_client(running.port)
    ehlo(client)
    internal = (451, "4.3.0 Error: internal server error")
    if phase == "on_mail_from":
        assert client.command("MAIL FROM:<a@example.com>") == internal
        assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    else:
        assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    if phase == "on_rcpt_to":
        assert client.command("RCPT TO:<b@example.com>") == internal
    assert client.command("RCPT TO:<b@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    if phase == "on_data":
        assert client.command("first\r\n.") == internal
        envelope_again = ["MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>"]
        assert [client.command(line)[0] for line in envelope_again] == [250, 250]
        assert client.command("DATA")[0] == 354
    assert client.command("second\r\n.")[0] == 250
    assert isinstance(errors.wait_for(1)[0], KeyError)
    # Other clients never noticed.
    other = raw_client(running.port)
    ehlo(other)
    assert other.command("NOOP")[0] == 250


def test_handler_return_value_becomes_the_250_text(start_server, raw_client):
    running = start_server(
        on_mail_from=lambda address, session: "Sender looks fine",
        on_rcpt_to=lambda address, session: "Recipient known",
        on_data=lambda stream, session: "Queued as 7F3A",
    )
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<a@example.com>") == (250, "2.1.0 Sender looks fine")
    assert client.command("RCPT TO:<b@example.com>") == (250, "2.1.5 Recipient known")
    assert client.command("DATA")[0] == 354
    assert client.command("x\r\n.") == (250, "2.6.0 Queued as 7F3A")


def test_handlers_on_a_subclass(start_server, raw_client):
    class Catcher(SMTPServer):
        def __init__(self, **options):
            super().__init__(**options)
            self.bodies = Recorder()
            self.closed = Recorder()

        async def on_connect(self, session):
            session.tag = "tagged"

        def on_mail_from(self, address, session):
            if address.address.endswith("@blocked.example"):
                raise SMTPError(550, "Blocked domain")

        async def on_rcpt_to(self, address, session):
            if address.address != "inbox@example.com":
                raise SMTPError(550, "No such user")

        async def on_data(self, stream, session):
            self.bodies.add((session.tag, await stream.read()))
            return "Caught"

        def on_close(self, session):
            self.closed.add(session.id)

    server = Catcher(name="mx.test", disable_reverse_lookup=True)
    running = start_server(server)
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<x@blocked.example>") == (550, "5.7.1 Blocked domain")
    assert client.command("MAIL FROM:<x@fine.example>")[0] == 250
    assert client.command("RCPT TO:<other@example.com>") == (550, "5.1.1 No such user")
    assert client.command("RCPT TO:<inbox@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    assert client.command("subclassed\r\n.") == (250, "2.6.0 Caught")
    client.command("QUIT")
    assert server.bodies.wait_for(1) == [("tagged", b"subclassed\r\n")]
    assert len(server.closed.wait_for(1)) == 1


def test_option_handler_wins_over_subclass_method(start_server, raw_client):
    class Base(SMTPServer):
        def on_mail_from(self, address, session):
            raise SMTPError(550, "from the subclass")

    running = start_server(
        Base(name="mx.test", disable_reverse_lookup=True, on_mail_from=lambda a, s: "from the option")
    )
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<a@example.com>") == (250, "2.1.0 from the option")


def test_callable_object_as_async_handler(start_server):
    class Store:
        def __init__(self):
            self.bodies = Recorder()

        async def __call__(self, stream, session):
            self.bodies.add(await stream.read())

    store = Store()
    running = start_server(on_data=store)
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"callable\r\n")
    assert store.bodies.wait_for(1) == [b"callable\r\n"]


def test_session_attributes_survive_rset(start_server, raw_client):
    seen = Recorder()

    def on_mail_from(address, session):
        session.counter = getattr(session, "counter", 0) + 1
        seen.add(session.counter)

    running = start_server(on_mail_from=on_mail_from)
    client = raw_client(running.port)
    ehlo(client)
    client.command("MAIL FROM:<a@example.com>")
    client.command("RSET")
    client.command("MAIL FROM:<a@example.com>")
    assert seen.items == [1, 2]


def test_smtplib_sees_refusals(start_server):
    def on_rcpt_to(address, session):
        raise SMTPError(550, "No such user here")

    running = start_server(on_rcpt_to=on_rcpt_to)
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
    assert refused.value.recipients == {"b@example.com": (550, b"5.1.1 No such user here")}


def test_smtp_error_validation():
    with pytest.raises(ValueError):
        SMTPError(250, "not an error")
    with pytest.raises(ValueError):
        SMTPError(550, "x", enhanced="4.1.1")
    error = SMTPError(550, "5.1.1 Unknown user")
    assert (error.code, error.enhanced, error.message) == (550, "5.1.1", "Unknown user")
    assert str(error) == "550 5.1.1 Unknown user"


def test_handler_421_closes_the_connection(start_server, raw_client):
    running = start_server(on_mail_from=refuse(SMTPError(421, "Too busy")))
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<a@example.com>") == (421, "4.4.2 Too busy")
    assert client.is_closed()


def test_handler_timeout(start_server, raw_client):
    async def slow(address, session):
        await asyncio.sleep(5)

    running = start_server(handler_timeout=0.3, on_rcpt_to=slow)
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert client.command("RCPT TO:<b@example.com>") == (451, "4.3.0 Error: timeout while processing, try again later")
    assert client.command("NOOP")[0] == 250


def test_on_data_raising_data_stream_error_is_not_accepted(start_server, raw_client):
    from smtpgate import DataStreamError

    async def on_data(stream, session):
        await stream.read()
        raise DataStreamError("the handler's own failure")

    running = start_server(on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    code, _ = client.command("complete body\r\n.")
    assert code != 250


def test_failure_inside_the_core_is_answered_421_and_reported(start_server, raw_client, monkeypatch):
    from smtpgate.protocol import core as core_module

    def broken(self, verb, argument):
        raise RuntimeError("core bug")

    monkeypatch.setitem(core_module._COMMANDS, "VRFY", broken)
    errors = Recorder()
    server = SMTPServer(name="mx.test", disable_reverse_lookup=True)
    server.on("error", lambda error, session: errors.add(error))
    running = start_server(server)
    client = raw_client(running.port)
    ehlo(client)
    client.send("VRFY someone\r\n")
    assert client.reply() == (421, "4.3.0 mx.test Error: internal server error")
    assert isinstance(errors.wait_for(1)[0], RuntimeError)
    other = raw_client(running.port)
    ehlo(other)
    assert other.command("NOOP")[0] == 250


def test_aiosmtplib_sees_refusals_and_size(start_server):
    import aiosmtplib

    def on_rcpt_to(address, session):
        if address.address.startswith("nobody"):
            raise SMTPError(550, "No such user")

    running = start_server(on_rcpt_to=on_rcpt_to, size=1000)

    async def main():
        async with aiosmtplib.SMTP(hostname=running.host, port=running.port, timeout=10, start_tls=False) as smtp:
            errors, _ = await smtp.sendmail("a@example.com", ["nobody@example.com", "b@example.com"], b"x\r\n")
            assert errors == {"nobody@example.com": aiosmtplib.SMTPResponse(550, "5.1.1 No such user")}
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
                await smtp.sendmail("a@example.com", ["b@example.com"], b"y" * 2000 + b"\r\n")
            assert refused.value.code == 552
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
                await smtp.sendmail("a@example.com", ["nobody@example.com"], b"z\r\n")

    asyncio.run(main())


def test_on_connect_timeout_is_421_and_close(start_server, raw_client):
    async def on_connect(session):
        await asyncio.sleep(5)

    running = start_server(on_connect=on_connect, handler_timeout=0.3)
    client = raw_client(running.port)
    assert client.reply() == (421, "4.3.0 mx.test Error: timeout while processing, try again later")
    assert client.is_closed()


def test_on_data_timeout_is_451_and_the_session_goes_on(start_server, raw_client):
    async def on_data(stream, session):
        await stream.read()
        await asyncio.sleep(5)

    running = start_server(on_data=on_data, handler_timeout=0.3)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    assert client.command("x\r\n.") == (451, "4.3.0 Error: timeout while processing, try again later")
    assert client.command("NOOP")[0] == 250


def test_auth_without_on_auth_is_unknown(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port)
    features = ehlo(client)
    assert not [line for line in features if line.startswith("AUTH")]
    assert client.command("AUTH PLAIN AGEAYg==") == (500, "5.5.2 Error: command not recognized")


def test_plain_function_returning_an_awaitable(start_server, raw_client):
    bodies = Recorder()

    async def store(stream):
        bodies.add(stream.getvalue())
        return "stored later"

    running = start_server(
        on_mail_from=lambda address, session: asyncio.sleep(0, "sender ok"),
        on_data=lambda stream, session: store(stream),
    )
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<a@example.com>") == (250, "2.1.0 sender ok")
    assert client.command("RCPT TO:<b@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    assert client.command("awaited\r\n.") == (250, "2.6.0 stored later")
    assert bodies.items == [b"awaited\r\n"]


def test_handler_enhanced_codes_are_dropped_when_hidden(start_server, raw_client):
    def on_rcpt_to(address, session):
        if address.address.startswith("a"):
            raise SMTPError(550, "5.7.1 Denied in the text")
        raise SMTPError(450, "Denied as an argument", enhanced="4.7.1")

    running = start_server(hide_enhancedstatuscodes=True, on_rcpt_to=on_rcpt_to)
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<x@example.com>") == (250, "Accepted")
    assert client.command("RCPT TO:<a@example.com>") == (550, "Denied in the text")
    assert client.command("RCPT TO:<b@example.com>") == (450, "Denied as an argument")


def test_on_data_returning_an_smtp_error_refuses(start_server, raw_client):
    def on_data(stream, session):
        return SMTPError(554, "Returned, not raised")

    running = start_server(on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    assert client.command("x\r\n.") == (554, "5.6.0 Returned, not raised")


def test_a_returned_smtperror_refuses_like_a_raised_one(start_server, raw_client):
    """Returning the error instead of raising it must never accept the address."""
    from smtpgate import SMTPError

    running = start_server(on_rcpt_to=lambda address, session: SMTPError(550, "No such user"))
    client = raw_client(running.port)
    client.reply()
    client.command("EHLO c")
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert client.command("RCPT TO:<b@example.com>") == (550, "5.1.1 No such user")
