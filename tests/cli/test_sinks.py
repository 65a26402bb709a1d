"""Sinks on their own: line endings across chunks, large messages, refused messages."""

from __future__ import annotations

import mailbox

import pytest

from smtpgate.sinks import DirSink, MaildirSink, MboxSink, parse_sink


def test_crlf_split_across_chunks_becomes_lf(tmp_path):
    sink = MaildirSink(str(tmp_path / "box"))
    delivery = sink.open("a@example.com")
    for chunk in (b"Subject: x\r", b"\n\r", b"\nline\r", b"\n", b"last\r"):
        delivery.write(chunk)
    where = delivery.commit()
    with open(where, "rb") as handle:
        assert handle.read() == b"Subject: x\n\nline\nlast\r"


def test_large_message_in_chunks(tmp_path):
    sink = MboxSink(str(tmp_path / "mbox"))
    delivery = sink.open("a@example.com")
    delivery.write(b"Subject: big\r\n\r\n")
    for _ in range(300):
        delivery.write(b"y" * 8190 + b"\r\n")
    delivery.commit()
    [message] = list(mailbox.mbox(str(tmp_path / "mbox")))
    assert len(message.get_payload()) == 300 * 8191


def test_abort_leaves_nothing(tmp_path):
    for sink in (MaildirSink(str(tmp_path / "box")), DirSink(str(tmp_path / "eml"))):
        delivery = sink.open("")
        delivery.write(b"Subject: x\r\n\r\npartial")
        delivery.abort()
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("spec", ["maildir", "mbox:", "ftp:x", "stdout:x"])
def test_bad_specs(spec):
    with pytest.raises(ValueError, match="invalid sink"):
        parse_sink(spec)


def test_unusable_path(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="sink 'maildir:"):
        parse_sink(f"maildir:{tmp_path / 'file' / 'box'}")
