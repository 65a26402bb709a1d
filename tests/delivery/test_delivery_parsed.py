"""The webhook's JSON form of a message: never fails, whatever the bytes."""

from __future__ import annotations

import json

from delivery_services import make_message
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpgate.deliver.parsed import message_json

header_lines = st.lists(
    st.sampled_from(
        [
            b"Subject: =?utf-8?b?w6k=?=",
            b"Subject: =?bogus-charset?q?x?=",
            b"From: <broken",
            b'To: a@example.test, , "x" <b@example.test>',
            b"Content-Type: multipart/mixed; boundary=zz",
            b"Content-Type: text/plain; charset=no-such-charset",
            b"Content-Transfer-Encoding: base64",
            b"Content-Transfer-Encoding: quoted-printable",
            b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.txt",
            b"Message-ID: <x@y>",
            b"Date: not a date",
            b"Subject: caf\xe9 \xff",
            b"X-Raw: \xc3\xa9\xfe",
        ]
    ),
    max_size=8,
)
body_parts = st.lists(
    st.one_of(st.binary(max_size=60), st.sampled_from([b"--zz", b"--zz--", b"=E9=", b"@@@", b"\xff\xfe"])), max_size=8
)


@settings(max_examples=150, deadline=None)
@given(headers=header_lines, parts=body_parts)
def test_any_message_gives_a_json_payload(headers: list[bytes], parts: list[bytes]) -> None:
    raw = b"\r\n".join(headers) + b"\r\n\r\n" + b"\r\n".join(parts)
    message = make_message(body=raw)
    payload = message_json(message, raw)
    text = json.dumps(payload, ensure_ascii=False)
    text.encode("utf-8")  # serialisable as the webhook sends it
    assert json.loads(text)["id"] == message.id
    assert payload["size"] == len(raw)
    for attachment in payload["attachments"]:
        assert isinstance(attachment["content"], str)
