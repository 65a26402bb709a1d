"""The MIME walk and Mailpit's message shapes, including hostile structures."""

from __future__ import annotations

import base64
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from smtpgate.inbox.parse import (
    MAX_DEPTH,
    MAX_PARTS,
    canonical_header_name,
    find_part,
    header_map,
    iter_decoded,
    parse_message,
    walk,
)


def multipart(parts: list[bytes], boundary: bytes = b"b0", subtype: bytes = b"mixed") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts) + b"--" + boundary + b"--\r\n"
    return b"Content-Type: multipart/" + subtype + b"; boundary=" + boundary + b"\r\n\r\n" + body


def test_text_html_attachment_inline() -> None:
    text = b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9"
    html = b'Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hi <img src="cid:logo@x"></p>'
    inline = (
        b"Content-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"\x89PNG fake")
    )
    attachment = (
        b"Content-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="r\xc3\xa9sum\xc3\xa9.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(bytes(range(256)) * 10)
    )
    related = multipart([html, inline], b"rel", b"related")
    alternative = multipart([text, related], b"alt", b"alternative")
    raw = b"From: A <a@x.test>\r\nTo: b@x.test\r\nSubject: Test\r\nMessage-ID: <id-1@x.test>\r\n" + multipart(
        [alternative, attachment]
    )
    parsed = parse_message(raw)
    assert parsed.text == "Café" and "<img" in parsed.html and parsed.message_id == "id-1@x.test"
    assert [a["ContentID"] for a in parsed.inline] == ["logo@x"]
    assert parsed.inline[0]["PartID"] == "1.2.2" and parsed.inline[0]["Size"] == len(b"\x89PNG fake")
    assert parsed.attachments[0]["FileName"] == "résumé.bin" and parsed.attachments[0]["Size"] == 2560
    assert parsed.attachments[0]["PartID"] == "2"
    location = find_part(raw, "2")
    assert location is not None and b"".join(iter_decoded(raw, location)) == bytes(range(256)) * 10


def test_html_only_gets_text_and_snippet() -> None:
    raw = b"Subject: x\r\nContent-Type: text/html\r\n\r\n<style>p{}</style><p>Hello</p><script>x()</script><p>World</p>"
    parsed = parse_message(raw)
    assert parsed.text == "Hello\nWorld" and parsed.snippet == "Hello World"


def test_broken_encodings_and_charsets_degrade() -> None:
    raw = (
        b'Subject: =?x-unknown?q?caf=E9?= =?utf-8?b?broken!!?=\r\nFrom: "unterminated <a@\r\n'
        b"Content-Type: text/plain; charset=no-such-charset\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"SGVsbG8gd29ybGQ!!!*&^%===\r\nbad line\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.errors == []
    assert parsed.text.startswith("Hello world")
    assert isinstance(parsed.subject, str)


def test_8bit_headers_and_latin1_body_without_declared_charset() -> None:
    raw = b"Subject: na\xefve\r\nContent-Type: text/plain\r\n\r\ncaf\xe9"
    parsed = parse_message(raw)
    assert parsed.text == "caf\ufffd" and "na" in parsed.subject


def test_headers_only_and_empty_messages() -> None:
    assert parse_message(b"").subject == ""
    assert parse_message(b"Subject: only headers").subject == "only headers"
    assert parse_message(b"\r\nbody without headers").text == "body without headers"


def test_multipart_without_boundary_or_closing_delimiter() -> None:
    no_boundary = parse_message(b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nhello\r\n")
    assert no_boundary.attachments and no_boundary.errors == []
    unclosed = parse_message(
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi"
    )
    assert unclosed.text == "hi"


def test_deep_nesting_is_bounded() -> None:
    depth = 5000
    raw = b"Subject: deep\r\n"
    opening = b"".join(b"Content-Type: multipart/mixed; boundary=d%d\r\n\r\n--d%d\r\n" % (i, i) for i in range(depth))
    raw += opening + b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    started = time.monotonic()
    parsed = parse_message(raw)
    assert time.monotonic() - started < 20
    assert parsed.truncated and parsed.errors == []
    leaves, truncated = walk(raw)
    assert truncated and max(leaf.depth for leaf in leaves) <= MAX_DEPTH


def test_ten_thousand_parts_are_bounded() -> None:
    parts = [
        b"Content-Type: text/plain\r\nContent-Disposition: attachment; filename=p%d.txt\r\n\r\nx" % i
        for i in range(12_000)
    ]
    raw = b"Subject: many\r\n" + multipart(parts)
    started = time.monotonic()
    parsed = parse_message(raw)
    assert time.monotonic() - started < 60
    assert parsed.truncated and len(parsed.attachments) == MAX_PARTS


def test_header_map_groups_repeated_headers_sorted() -> None:
    raw = b"Received: a\r\nsubject: s\r\nReceived: b\r\nX-Z: 1\r\n\r\nbody"
    assert header_map(raw) == {"Received": ["a", "b"], "Subject": ["s"], "X-Z": ["1"]}


def test_header_map_has_mailpits_spelling_and_unfolding() -> None:
    """Go's canonical names (Mailpit's ``/headers`` keys), folds as one space, encoded
    words decoded, bad bytes replaced."""
    raw = (
        b"message-ID: <a@b>\r\nMIME-Version: 1.0\r\nReceived-SPF: pass\r\n"
        b"Received: from x \r\n\tby y\r\n  with z\r\nSubject: =?utf-8?q?caf=C3=A9?=  two\r\n"
        b"X-Bad: \xff\r\n\r\nbody"
    )
    assert header_map(raw) == {
        "Message-Id": ["<a@b>"],
        "Mime-Version": ["1.0"],
        "Received": ["from x by y with z"],
        "Received-Spf": ["pass"],
        "Subject": ["café  two"],
        "X-Bad": ["\ufffd"],
    }
    assert [canonical_header_name(n) for n in ("dkim-signature", "X-MS-Exchange", "odd name")] == [
        "Dkim-Signature",
        "X-Ms-Exchange",
        "odd name",
    ]


def test_addresses_and_tags() -> None:
    raw = b'From: =?utf-8?q?J=C3=BCrgen?= <j@x.test>\r\nTo: a@x.test, "B, C" <b@x.test>\r\nX-Tags: one, two\r\n\r\n.'
    parsed = parse_message(raw)
    assert parsed.from_ == {"Name": "Jürgen", "Address": "j@x.test"}
    assert parsed.to == [{"Name": "", "Address": "a@x.test"}, {"Name": "B, C", "Address": "b@x.test"}]
    assert parsed.header_tags == ["one", "two"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_parse_without_error(data: bytes) -> None:
    parsed = parse_message(data)
    assert parsed.errors == []


_piece = st.sampled_from(
    [
        b"--b0\r\n",
        b"--b0--\r\n",
        b"Content-Type: multipart/mixed; boundary=b0\r\n",
        b"\r\n",
        b"text\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Type: text/plain; charset=utf-8\r\n",
        b"=?utf-8?q?x?=",
        b"Content-Disposition: attachment; filename=a\r\n",
        b"QUJD\r\n",
        b"\xff\xfe",
        b"Content-ID: <c>\r\n",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_piece, max_size=60))
def test_mime_like_fragments_parse_without_error(pieces: list[bytes]) -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + b"".join(pieces)
    parsed = parse_message(raw)
    assert parsed.errors == []
    for attachment in parsed.attachments + parsed.inline:
        location = find_part(raw, attachment["PartID"])
        assert location is not None
        assert sum(len(c) for c in iter_decoded(raw, location)) == attachment["Size"]


def test_addresses_with_bytes_that_are_not_utf8_become_valid_text() -> None:
    """Raw 8-bit and undecodable RFC 2047 words in address headers: stored as U+FFFD, so
    the message is never refused for them (SQLite and JSON take only valid Unicode)."""
    data = b"From: b\xf6b <bob@mx.test>\r\nTo: =?utf-8?b?/w==?= <al@x.test>\r\nCc: \xc0\xaf@x.test\r\n\r\nhi\r\n"
    parsed = parse_message(data)
    for address in [parsed.from_, *parsed.to, *parsed.cc]:
        for text in address.values():
            text.encode("utf-8")  # no lone surrogates left
    assert parsed.from_ == {"Name": "b\ufffdb", "Address": "bob@mx.test"}
    assert parsed.to[0]["Address"] == "al@x.test" and "\ufffd" in parsed.to[0]["Name"]
