"""on_data's first step runs in the read callback that brought the end of the message.

A handler that does not suspend is answered there; one that suspends goes on in the
session task. Either way it must not be able to tell: it runs as the session task, in the
session's context, with the same results, refusals, timeouts and cancellation as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket

import pytest
from server_support import envelope

from smtpgate import SMTPError, SMTPServer, ondata
from smtpgate.firststep import first_step
from support import Recorder

who = contextvars.ContextVar("who", default="nobody")
seen_by_close = contextvars.ContextVar("seen_by_close", default="unset")


async def wait_a_little():
    await asyncio.sleep(0.01)


@pytest.mark.parametrize("suspends", [False, True], ids=["at-once", "suspends"])
@pytest.mark.parametrize("handler_timeout", [None, 5.0])
def test_on_data_runs_as_the_session_task_in_its_context(start_server, raw_client, suspends, handler_timeout):
    tasks = Recorder()
    values = Recorder()

    async def on_connect(session):
        await asyncio.sleep(0)
        tasks.add(("connect", asyncio.current_task()))
        who.set("set by on_connect")

    async def on_data(stream, session):
        body = await stream.read()
        tasks.add(("data", asyncio.current_task()))
        values.add(who.get())
        if suspends:
            await wait_a_little()
            tasks.add(("data, later", asyncio.current_task()))
        seen_by_close.set("set by on_data")
        return f"got {len(body)} bytes"

    def on_close(session):
        tasks.add(("close", asyncio.current_task()))
        values.add(seen_by_close.get())

    running = start_server(on_connect=on_connect, on_data=on_data, on_close=on_close, handler_timeout=handler_timeout)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    assert client.command("hello\r\n.") == (250, "2.6.0 got 7 bytes")
    assert client.command("QUIT")[0] == 221
    recorded = tasks.wait_for(4 if suspends else 3)
    session_task = recorded[0][1]
    assert session_task is not None
    assert all(task is session_task for _, task in recorded), recorded
    assert values.wait_for(2) == ["set by on_connect", "set by on_data"]


@pytest.mark.parametrize("handler_timeout", [None, 5.0])
def test_asyncio_timeout_inside_the_handler_stays_the_handlers(start_server, raw_client, handler_timeout):
    """asyncio.timeout binds the current task when entered, in the first step: its expiry
    must reach the handler (as TimeoutError), not end the session."""

    async def on_data(stream, session):
        await stream.read()
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(5)
        except TimeoutError:
            return "gave up waiting, kept it"
        return "not reached"

    running = start_server(on_data=on_data, handler_timeout=handler_timeout)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    assert client.command("x\r\n.") == (250, "2.6.0 gave up waiting, kept it")
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250  # the session goes on
    assert client.command("RCPT TO:<b@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    assert client.command("y\r\n.") == (250, "2.6.0 gave up waiting, kept it")


def test_handler_timeout_cancels_a_handler_that_suspended(start_server, raw_client):
    cancelled = Recorder()

    async def on_data(stream, session):
        await stream.read()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.add(True)
            raise

    running = start_server(on_data=on_data, handler_timeout=0.2)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    assert client.command("x\r\n.") == (451, "4.3.0 Error: timeout while processing, try again later")
    assert cancelled.wait_for(1) == [True]
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250


@pytest.mark.parametrize("suspends", [False, True], ids=["at-once", "suspends"])
def test_pipelined_commands_after_the_dot_are_answered_in_order(start_server, raw_client, suspends):
    async def on_data(stream, session):
        body = await stream.read()
        if suspends:
            await wait_a_little()
        return body.decode().strip()

    running = start_server(on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send("first\r\n.\r\nMAIL FROM:<c@example.com>\r\nRCPT TO:<d@example.com>\r\nDATA\r\n")
    replies = client.replies(4)
    assert replies[:3] == [(250, "2.6.0 first"), (250, "2.1.0 Accepted"), (250, "2.1.5 Accepted")]
    assert replies[3][0] == 354
    assert client.command("second\r\n.") == (250, "2.6.0 second")


def test_a_message_whose_client_left_after_the_dot_is_still_handled(start_server, raw_client):
    """The handler began with the whole message and suspended; the client closed without
    waiting for the reply. The handler is let finish (a client that does not wait for the
    250 may send the message again: duplicates, never a loss), and on_close comes once."""
    stored = Recorder()
    closes = Recorder()

    async def on_data(stream, session):
        body = await stream.read()
        await asyncio.sleep(0.2)
        stored.add(body)

    running = start_server(on_data=on_data, on_close=closes.add)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send("kept\r\n.\r\n")
    client.sock.shutdown(socket.SHUT_RDWR)
    client.close()
    assert stored.wait_for(1) == [b"kept\r\n"]
    assert len(closes.wait_for(1)) == 1


@pytest.mark.parametrize("style", ["plain", "async"])
def test_a_refusal_or_a_failure_at_once(start_server, raw_client, style):
    errors = Recorder()
    bodies = {b"refuse\r\n": SMTPError(554, "No thanks"), b"fail\r\n": ValueError("a bug")}

    def decide(body):
        problem = bodies.get(body)
        if problem is not None:
            raise problem
        return "fine"

    def plain(stream, session):
        return decide(stream.getvalue())

    async def at_once(stream, session):
        return decide(await stream.read())

    server = SMTPServer(name="mx.test", disable_reverse_lookup=True, on_data=plain if style == "plain" else at_once)
    server.on("error", lambda error, session: errors.add(error))
    running = start_server(server)
    client = raw_client(running.port)
    envelope(client)
    for body, reply in [
        ("refuse", (554, "5.6.0 No thanks")),
        ("fail", (451, "4.3.0 Error: internal server error")),
        ("ok", (250, "2.6.0 fine")),
    ]:
        assert client.command("DATA")[0] == 354
        assert client.command(f"{body}\r\n.") == reply
        assert client.command("MAIL FROM:<a@example.com>")[0] == 250
        assert client.command("RCPT TO:<b@example.com>")[0] == 250
    assert [type(error) for error in errors.wait_for(1)] == [ValueError]


def test_a_handler_that_raises_cancellation_at_once_ends_only_its_session(start_server, raw_client):
    closes = Recorder()

    async def on_data(stream, session):
        raise asyncio.CancelledError

    running = start_server(on_data=on_data, on_close=closes.add)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send("x\r\n.\r\n")
    assert client.is_closed()
    assert len(closes.wait_for(1)) == 1
    other = raw_client(running.port)
    envelope(other)


@pytest.mark.parametrize("suspends", [False, True], ids=["at-once", "suspends"])
def test_the_first_step_is_taken_in_the_read_callback(start_server, raw_client, monkeypatch, suspends):
    """The point of the first step: each message's handler is begun by the read callback
    (`first_step`, which only that path calls); one that does not suspend ends there."""
    steps = Recorder()

    def recorded(coroutine):
        returned, value = first_step(coroutine)
        steps.add(returned)
        return returned, value

    monkeypatch.setattr(ondata, "first_step", recorded)

    async def on_data(stream, session):
        await stream.read()
        if suspends:
            await wait_a_little()

    running = start_server(on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    for _ in range(3):
        assert client.command("DATA")[0] == 354
        assert client.command("x\r\n.")[0] == 250
        assert client.command("MAIL FROM:<a@example.com>")[0] == 250
        assert client.command("RCPT TO:<b@example.com>")[0] == 250
    assert steps.items == [not suspends] * 3
