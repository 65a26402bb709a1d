"""What the docs say about smtplib.LMTP: ``data()`` reads one reply (the first
recipient's); ``getreply()`` reads each further one, in RCPT order."""

from __future__ import annotations

import smtplib

from smtpgate import DataStream, ServerThread, Session, SMTPError, SMTPServer


async def on_data(stream: DataStream, session: Session) -> list[str | SMTPError | None]:
    await stream.read()
    return ["Delivered", SMTPError(452, "Mailbox full"), None]


def test_smtplib_lmtp_reads_one_reply_after_data_and_getreply_reads_the_rest() -> None:
    server = SMTPServer(name="mx.test", lmtp=True, disable_reverse_lookup=True, on_data=on_data)
    with ServerThread(server) as running:
        client = smtplib.LMTP(running.host, running.port, timeout=10)
        try:
            client.ehlo("client.test")  # LMTP.ehlo sends LHLO
            client.mail("a@example.com")
            for rcpt in ("b@x.example", "c@x.example", "d@x.example"):
                assert client.rcpt(rcpt)[0] == 250
            first = client.data(b"Subject: hi\r\n\r\nhello\r\n")
            rest = [client.getreply() for _ in range(2)]
            assert first == (250, b"2.6.0 Delivered")
            assert rest == [(452, b"4.2.2 Mailbox full"), (250, b"2.6.0 <d@x.example> OK: message accepted")]
            assert client.noop() == (250, b"2.0.0 OK")  # in step: no reply left unread
        finally:
            client.close()
