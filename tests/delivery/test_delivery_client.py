"""The relay and LMTP deliverers against smtpgate's own server on loopback: STARTTLS
verified, AUTH, pipelining, per-recipient outcomes, bodies delivered byte for byte."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import trustme
from delivery_services import make_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpgate import AuthResult, ServerThread, SMTPError
from smtpgate.deliver import parse_deliverer
from smtpgate.deliver.client import MailClient, _DotStuffer
from smtpgate.deliver.lmtp import LMTPDeliverer
from smtpgate.deliver.relay import RelayDeliverer
from smtpgate.queue import Delivered, Failed, Retry


class Recorder:
    """Handlers that keep every message and refuse ``nobody@`` (550) and ``busy@`` (451)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, Any]] = []

    async def on_rcpt_to(self, address: Any, session: Any) -> None:
        if address.address.startswith("nobody@"):
            raise SMTPError(550, "No such user")
        if address.address.startswith("busy@"):
            raise SMTPError(451, "Try again later")

    async def on_data(self, stream: Any, session: Any) -> Any:
        body = await stream.read()
        rcpts = [r.address for r in session.envelope.rcpt_to]
        self.messages.append((session.envelope.mail_from.address, rcpts, body, session))
        if session.transmission_type.startswith("LMTP"):
            return [SMTPError(452, "Mailbox full") if r.startswith("full@") else None for r in rcpts]
        return None

    async def on_auth(self, auth: Any, session: Any) -> AuthResult | None:
        if auth.username == "relay" and auth.password == "s3cret":
            return AuthResult(user="relay")
        return None


def _client_context(test_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    test_ca.configure_trust(context)
    return context


def test_relay_starttls_auth_per_recipient(
    start_server: Callable[..., ServerThread], mx_pair: dict[str, bytes], test_ca: trustme.CA
) -> None:
    recorder = Recorder()
    server = start_server(on_rcpt_to=recorder.on_rcpt_to, on_data=recorder.on_data, on_auth=recorder.on_auth, **mx_pair)
    relay = RelayDeliverer(
        "127.0.0.1",
        server.port,
        tls_context=_client_context(test_ca),
        username="relay",
        password="s3cret",
        local_name="client.test",
    )
    message = make_message(("ok@example.test", "nobody@example.test", "busy@example.test"))
    outcomes = asyncio.run(relay(message))
    assert isinstance(outcomes, dict)
    assert isinstance(outcomes["ok@example.test"], Delivered)
    assert isinstance(outcomes["nobody@example.test"], Failed)
    assert outcomes["nobody@example.test"].reason.startswith("550")
    assert isinstance(outcomes["busy@example.test"], Retry)
    [(sender, rcpts, body, session)] = recorder.messages
    assert sender == "sender@example.org" and rcpts == ["ok@example.test"]
    assert body == message.body.open().read()
    assert session.secure and session.user == "relay"


def test_relay_wrong_password_is_retried(
    start_server: Callable[..., ServerThread], mx_pair: dict[str, bytes], test_ca: trustme.CA
) -> None:
    recorder = Recorder()
    server = start_server(on_data=recorder.on_data, on_auth=recorder.on_auth, **mx_pair)
    relay = RelayDeliverer(
        "127.0.0.1", server.port, tls_context=_client_context(test_ca), username="relay", password="wrong"
    )
    outcome = asyncio.run(relay(make_message()))
    assert isinstance(outcome, Retry) and "535" in outcome.reason
    assert recorder.messages == []


def test_relay_requires_starttls_unless_told(start_server: Callable[..., ServerThread]) -> None:
    recorder = Recorder()
    server = start_server(on_data=recorder.on_data, hide_starttls=True)
    required = parse_deliverer(f"smtp://127.0.0.1:{server.port}")
    outcome = asyncio.run(required(make_message()))
    assert isinstance(outcome, Retry) and "STARTTLS" in outcome.reason
    plain = parse_deliverer(f"smtp://127.0.0.1:{server.port}?starttls=opportunistic")
    outcomes = asyncio.run(plain(make_message()))
    assert isinstance(outcomes, dict) and all(isinstance(o, Delivered) for o in outcomes.values())
    assert len(recorder.messages) == 1


def test_smtps_implicit_tls(
    start_server: Callable[..., ServerThread], mx_pair: dict[str, bytes], test_ca: trustme.CA
) -> None:
    recorder = Recorder()
    server = start_server(on_data=recorder.on_data, secure=True, **mx_pair)
    relay = parse_deliverer(f"smtps://127.0.0.1:{server.port}", tls_context=_client_context(test_ca))
    outcomes = asyncio.run(relay(make_message()))
    assert isinstance(outcomes, dict) and all(isinstance(o, Delivered) for o in outcomes.values())
    assert recorder.messages[0][3].secure


def test_lmtp_one_outcome_per_recipient(start_server: Callable[..., ServerThread]) -> None:
    recorder = Recorder()
    server = start_server(on_rcpt_to=recorder.on_rcpt_to, on_data=recorder.on_data, lmtp=True)
    lmtp = LMTPDeliverer("127.0.0.1", server.port)
    outcomes = asyncio.run(lmtp(make_message(("a@example.test", "full@example.test", "nobody@example.test"))))
    assert isinstance(outcomes, dict)
    assert isinstance(outcomes["a@example.test"], Delivered)
    assert isinstance(outcomes["full@example.test"], Retry) and outcomes["full@example.test"].reason.startswith("452")
    assert isinstance(outcomes["nobody@example.test"], Failed)


def test_unreachable_server_is_retried() -> None:
    outcome = asyncio.run(LMTPDeliverer(path="/nonexistent/lmtp.sock")(make_message()))
    assert isinstance(outcome, Retry) and "cannot connect" in outcome.reason


lines = st.lists(
    st.one_of(st.just(b"."), st.just(b".."), st.just(b""), st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))),
    max_size=12,
).map(lambda parts: b"".join(p.replace(b"\r", b"") + b"\r\n" for p in parts))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=lines, cut=st.integers(min_value=1, max_value=7))
def test_dot_stuffing_across_chunks(body: bytes, cut: int) -> None:
    stuffer = _DotStuffer()
    chunks = [body[i : i + cut] for i in range(0, len(body), cut)]
    stuffed = b"".join(stuffer.feed(chunk) for chunk in chunks)
    expected = b"".join((b"." + line if line.startswith(b".") else line) for line in body.splitlines(keepends=True))
    assert stuffed == expected


def test_bodies_arrive_byte_for_byte(start_server: Callable[..., ServerThread]) -> None:
    recorder = Recorder()
    server = start_server(on_data=recorder.on_data, hide_starttls=True)
    relay = RelayDeliverer("127.0.0.1", server.port, tls="none")
    bodies = [
        b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nend\r\n",
        b"Subject: empty body\r\n\r\n",
        b"Subject: eight bit\r\n\r\n\xc3\xa9t\xc3\xa9\r\n",
        b"Subject: big\r\n\r\n" + b"0123456789" * 20000 + b"\r\n.\r\n",
    ]
    for body in bodies:
        outcomes = asyncio.run(relay(make_message(body=body)))
        assert isinstance(outcomes, dict) and all(isinstance(o, Delivered) for o in outcomes.values())
    assert [m[2] for m in recorder.messages] == bodies


def test_starttls_the_python_3_10_way(
    start_server: Callable[..., ServerThread], mx_pair: dict[str, bytes], test_ca: trustme.CA
) -> None:
    class OldClient(MailClient):
        stream_start_tls = False  # what Python 3.10 does: loop.start_tls and a new stream pair

    async def main() -> dict[str, Any]:
        client = await OldClient.connect("127.0.0.1", server.port, timeout=10)
        try:
            await client.hello("client.test")
            await client.starttls(_client_context(test_ca), "127.0.0.1")
            await client.hello("client.test")
            message = make_message()
            return await client.send("s@example.org", message.pending, message.iter_body(), size=message.size)
        finally:
            await client.quit()

    recorder = Recorder()
    server = start_server(on_data=recorder.on_data, **mx_pair)
    outcomes = asyncio.run(main())
    assert all(isinstance(o, Delivered) for o in outcomes.values())
    assert recorder.messages[0][3].secure


def test_lmtp_server_gone_after_one_reply_keeps_that_reply() -> None:
    """A scripted LMTP server that answers the first recipient after the data, then hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 lmtp.test LMTP\r\n")
        while line := await reader.readline():
            command = line.upper()
            if command.startswith(b"LHLO"):
                writer.write(b"250-lmtp.test\r\n250 PIPELINING\r\n")
            elif command.startswith(b"DATA"):
                writer.write(b"354 go ahead\r\n")
                while (await reader.readline()) != b".\r\n":
                    pass
                writer.write(b"250 2.0.0 <first@example.test> saved\r\n")
                await writer.drain()
                writer.close()
                return
            else:
                writer.write(b"250 2.1.0 ok\r\n")
            await writer.drain()

    async def main() -> Any:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await LMTPDeliverer("127.0.0.1", port, timeout=10)(
                make_message(("first@example.test", "second@example.test"))
            )
        finally:
            server.close()
            await server.wait_closed()

    outcomes = asyncio.run(main())
    assert isinstance(outcomes["first@example.test"], Delivered)
    assert isinstance(outcomes["second@example.test"], Retry)
