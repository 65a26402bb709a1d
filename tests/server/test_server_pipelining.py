"""PIPELINING and the guards against clients that do not speak SMTP properly."""

from __future__ import annotations

import asyncio
import smtplib
import threading

import aiosmtplib
from server_support import ehlo

from support import Recorder


def test_whole_transaction_in_one_write(smtpgate_server, raw_client):
    client = raw_client(smtpgate_server.port)
    assert client.reply()[0] == 220
    client.send(
        b"EHLO client.test\r\n"
        b"MAIL FROM:<a@example.com>\r\n"
        b"RCPT TO:<b@example.com>\r\n"
        b"RCPT TO:<not an address>\r\n"
        b"RCPT TO:<c@example.com>\r\n"
        b"DATA\r\n"
        b"Subject: one\r\n\r\nfirst\r\n.\r\n"
        b"MAIL FROM:<>\r\n"
        b"RCPT TO:<d@example.com>\r\n"
        b"DATA\r\n"
        b"second\r\n.\r\n"
        b"NOOP\r\n"
        b"QUIT\r\n"
    )
    codes = [code for code, _ in client.replies(13)]
    assert codes == [250, 250, 250, 501, 250, 354, 250, 250, 250, 354, 250, 250, 221]
    assert client.is_closed()
    assert [(m.mail_from, m.rcpt_to, m.raw) for m in smtpgate_server.wait_for(2)] == [
        ("a@example.com", ["b@example.com", "c@example.com"], b"Subject: one\r\n\r\nfirst\r\n"),
        ("", ["d@example.com"], b"second\r\n"),
    ]


def test_pipelined_replies_wait_for_slow_handlers(smtpgate_server_factory, raw_client):
    """Replies come in command order even when a handler takes its time."""
    order = Recorder()

    async def on_rcpt_to(address, session):
        if address.address.startswith("slow"):
            await asyncio.sleep(0.2)
        order.add(address.address)

    server = smtpgate_server_factory(on_rcpt_to=on_rcpt_to)
    client = raw_client(server.port)
    ehlo(client)
    client.send(
        "MAIL FROM:<a@example.com>\r\nRCPT TO:<slow@example.com>\r\nRCPT TO:<fast@example.com>\r\n"
        "DATA\r\nbody\r\n.\r\nQUIT\r\n"
    )
    assert [code for code, _ in client.replies(6)] == [250, 250, 250, 354, 250, 221]
    assert order.items == ["slow@example.com", "fast@example.com"]
    [message] = server.wait_for(1)
    assert message.rcpt_to == ["slow@example.com", "fast@example.com"]


def test_aiosmtplib_pipelines_a_message(smtpgate_server):
    async def send():
        return await aiosmtplib.send(
            b"Subject: pipelined\r\n\r\nvia aiosmtplib\r\n",
            sender="a@example.com",
            recipients=["b@example.com", "c@example.com"],
            hostname=smtpgate_server.host,
            port=smtpgate_server.port,
            start_tls=False,
            timeout=10,
        )

    errors, response = asyncio.run(send())
    assert errors == {}
    assert response.startswith("2.6.0")
    [message] = smtpgate_server.wait_for(1)
    assert (message.mail_from, message.rcpt_to, message.raw) == (
        "a@example.com",
        ["b@example.com", "c@example.com"],
        b"Subject: pipelined\r\n\r\nvia aiosmtplib\r\n",
    )


def test_early_talker_gets_421_and_close(start_server, raw_client):
    released = threading.Event()

    async def on_connect(session):
        # Hold the greeting back until the client has spoken.
        for _ in range(500):
            if released.is_set():
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)

    running = start_server(on_connect=on_connect)
    client = raw_client(running.port)
    client.send("EHLO too.soon\r\n")
    released.set()
    assert client.reply() == (421, "4.7.0 mx.test You talk too soon")
    assert client.is_closed()


def test_http_request_gets_421_and_close(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port)
    client.reply()
    client.send("GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n")
    assert client.reply() == (421, "4.7.0 mx.test HTTP requests not allowed")
    assert client.is_closed()


def test_post_request_after_ehlo_gets_421(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port)
    ehlo(client)
    client.send("POST /relay HTTP/1.0\r\n\r\n")
    assert client.reply()[0] == 421
    assert client.is_closed()


def test_too_many_unrecognised_commands(start_server, raw_client):
    running = start_server(max_unrecognized_commands=4)
    client = raw_client(running.port)
    client.reply()
    for _ in range(3):
        assert client.command("BOGUS")[0] == 500
    client.send("BOGUS\r\nNOOP\r\n")
    # The fourth bad command is answered 421 instead of 500, and the NOOP after it not at all.
    assert client.reply() == (421, "4.7.0 mx.test Error: too many unrecognized commands")
    assert client.is_closed()
    assert client.buffer == b""


def test_bad_commands_do_not_disturb_other_clients(start_server, raw_client):
    running = start_server(max_unrecognized_commands=2)
    good = raw_client(running.port)
    bad = raw_client(running.port)
    ehlo(good)
    bad.reply()
    bad.send(b"\x00\xff garbage\r\n" * 3)
    assert bad.is_closed()
    assert good.command("NOOP") == (250, "2.0.0 OK")


def test_thousands_of_pipelined_commands(start_server, raw_client):
    """More pipelined input than the server buffers: it pauses reading, answers in order, resumes."""
    running = start_server(max_unrecognized_commands=100)
    client = raw_client(running.port, timeout=30)
    ehlo(client)
    count = 20_000
    sender = threading.Thread(target=client.send, args=(b"NOOP\r\n" * count + b"QUIT\r\n",), daemon=True)
    sender.start()
    replies = client.replies(count + 1)
    sender.join(30)
    assert replies[:count] == [(250, "2.0.0 OK")] * count
    assert replies[count][0] == 221


def test_many_recipients_in_one_write(smtpgate_server, raw_client):
    client = raw_client(smtpgate_server.port, timeout=30)
    ehlo(client)
    rcpts = [f"user{i}@example.com" for i in range(1000)]
    client.send(
        "MAIL FROM:<a@example.com>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts) + "DATA\r\nmany\r\n.\r\n"
    )
    codes = [code for code, _ in client.replies(len(rcpts) + 3)]
    assert codes == [250] * (len(rcpts) + 1) + [354, 250]
    [message] = smtpgate_server.wait_for(1)
    assert message.rcpt_to == rcpts


def test_transactions_on_one_connection(start_server, received):
    seen = Recorder()

    async def on_data(stream, session):
        seen.add((session.transaction, session.envelope.mail_from.address))
        await received.on_data(stream, session)

    running = start_server(on_data=on_data)
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        for i in range(3):
            client.sendmail(f"s{i}@example.com", ["b@example.com"], f"message {i}\r\n".encode())
        client.mail("abandoned@example.com")
        client.rset()
        client.sendmail("last@example.com", ["b@example.com"], b"after rset\r\n")
    assert seen.wait_for(4) == [
        (1, "s0@example.com"),
        (2, "s1@example.com"),
        (3, "s2@example.com"),
        (4, "last@example.com"),
    ]
    assert len({id(m[3]) for m in received.messages}) == 1  # one session object throughout
