"""Sinks on their own: line endings across chunks, large messages, refused messages, and
sinks that cannot store found when they are made (not at the first message)."""

from __future__ import annotations

import asyncio
import mailbox
import os

import pytest

from smtpgate.sinks import DirSink, MaildirSink, MboxSink, MessageInfo, Sink, SinkError, parse_sink, register_sink

INFO = MessageInfo(sender="a@example.com", recipients=("b@example.com",))


def store(sink: Sink, *chunks: bytes) -> str:
    async def run() -> str:
        delivery = sink.open(INFO)
        for chunk in chunks:
            await delivery.write(chunk)
        return await delivery.commit()

    return asyncio.run(run())


def test_crlf_split_across_chunks_becomes_lf(tmp_path):
    where = store(MaildirSink(str(tmp_path / "box")), b"Subject: x\r", b"\n\r", b"\nline\r", b"\n", b"last\r")
    with open(where, "rb") as handle:
        assert handle.read() == b"Subject: x\n\nline\nlast\r"


def test_large_message_in_chunks(tmp_path):
    store(MboxSink(str(tmp_path / "mbox")), b"Subject: big\r\n\r\n", *([b"y" * 8190 + b"\r\n"] * 300))
    [message] = list(mailbox.mbox(str(tmp_path / "mbox")))
    assert len(message.get_payload()) == 300 * 8191
    assert message.get_from().startswith("a@example.com ")


def test_dir_sink_keeps_crlf(tmp_path):
    where = store(DirSink(str(tmp_path / "eml")), b"Subject: x\r\n\r\nbody\r\n")
    assert where.endswith(".eml")
    with open(where, "rb") as handle:
        assert handle.read() == b"Subject: x\r\n\r\nbody\r\n"


def test_abort_leaves_nothing(tmp_path):
    async def run() -> None:
        for sink in (MaildirSink(str(tmp_path / "box")), DirSink(str(tmp_path / "eml"))):
            delivery = sink.open(MessageInfo(sender=""))
            await delivery.write(b"Subject: x\r\n\r\npartial")
            delivery.abort()

    asyncio.run(run())
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("spec", ["maildir", "mbox:", "ftp:x", "stdout:x"])
def test_bad_specs(spec):
    with pytest.raises(SinkError, match="invalid sink"):
        parse_sink(spec)


def test_unusable_path(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SinkError, match="sink 'maildir:"):
        parse_sink(f"maildir:{tmp_path / 'file' / 'box'}")


@pytest.mark.parametrize("kind", ["maildir", "dir", "mbox"])
def test_existing_empty_directory(tmp_path, kind):
    """An existing empty folder is made ready (Maildir's tmp/new/cur included) and stores."""
    (tmp_path / "target").mkdir()
    spec = f"{kind}:{tmp_path / 'target'}" if kind != "mbox" else f"mbox:{tmp_path / 'target' / 'mail.mbox'}"
    assert store(parse_sink(spec), b"Subject: x\r\n\r\nhello\r\n")
    if kind == "maildir":
        assert sorted(os.listdir(tmp_path / "target")) == ["cur", "new", "tmp"]
        assert len(os.listdir(tmp_path / "target" / "new")) == 1


@pytest.mark.parametrize("kind", ["maildir", "dir", "mbox"])
def test_missing_parent_is_made(tmp_path, kind):
    target = tmp_path / "a" / "b" / ("mail.mbox" if kind == "mbox" else "box")
    assert store(parse_sink(f"{kind}:{target}"), b"Subject: x\r\n\r\nhello\r\n")


@pytest.mark.parametrize("kind", ["maildir", "dir", "mbox"])
def test_unwritable_directory_fails_when_made(tmp_path, kind):
    """As an unprivileged user (root writes anywhere): one SinkError line, at once."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if kind == "maildir":
        for name in ("tmp", "new", "cur"):
            (folder / name).mkdir()
    target = folder / "mail.mbox" if kind == "mbox" else folder
    for path in [folder, *folder.iterdir()]:
        path.chmod(0o555)
    tmp_path.chmod(0o755)
    assert _error_as_nobody(f"{kind}:{target}").startswith("sink ")


def _error_as_nobody(spec: str) -> str:
    """``parse_sink(spec)``'s error in a forked child that runs as ``nobody`` when we are root."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        text = "no error"
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            parse_sink(spec)
        except SinkError as error:
            text = str(error)
        except BaseException as error:
            text = f"unexpected {error!r}"
        os.write(write, text.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    assert "Permission denied" in text, text
    return text


def test_register_sink(tmp_path):
    register_sink("testbox", lambda rest: MaildirSink(str(tmp_path / rest)))
    sink = parse_sink("testbox:inner")
    assert isinstance(sink, MaildirSink) and (tmp_path / "inner" / "new").is_dir()
    with pytest.raises(ValueError):
        register_sink("not a scheme", MaildirSink)


def test_message_info_from_a_session():
    from smtpgate import Address, Envelope, Session

    session = Session(id="abc", remote_address="192.0.2.1", client_hostname="client.example", secure=True)
    session.user = "alice"
    session.envelope = Envelope(mail_from=Address("a@example.com"), rcpt_to=[Address("b@x"), Address("c@y")])
    info = MessageInfo.from_session(session)
    assert (info.sender, info.recipients, info.user, info.secure, info.lmtp) == (
        "a@example.com",
        ("b@x", "c@y"),
        "alice",
        True,
        False,
    )
    assert info.client_address == "192.0.2.1" and info.client_name == "client.example" and info.received > 0
