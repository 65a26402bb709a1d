"""The stream entry layout round-trips any message (hypothesis), and spec options parse."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from smtpgate.queue import BytesBody, QueuedMessage, RecipientState
from smtpgate.queue.redis_codec import entry_fields, message_from_fields, requeued
from smtpgate.sinks import MessageInfo

texts = st.text(max_size=30)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
states = st.builds(
    RecipientState,
    address=texts,
    status=st.sampled_from(["pending", "delivered", "failed"]),
    detail=texts,
    updated=st.none() | times,
)
infos = st.builds(
    MessageInfo,
    sender=texts,
    recipients=st.lists(texts, max_size=4).map(tuple),
    session_id=texts,
    client_address=texts,
    client_name=texts,
    user=st.none() | texts,
    secure=st.booleans(),
    lmtp=st.booleans(),
    received=times,
)


@st.composite
def messages(draw: Any) -> QueuedMessage:
    return QueuedMessage(
        id=draw(st.from_regex(r"[0-9a-f]{24}", fullmatch=True)),
        info=draw(infos),
        size=draw(st.integers(0, 2**40)),
        queued=draw(times),
        recipients=tuple(draw(st.lists(states, max_size=4))),
        body=BytesBody(b""),
        attempts=draw(st.integers(0, 1000)),
        first_attempt=draw(st.none() | times),
        last_attempt=draw(st.none() | times),
        next_attempt=draw(times),
        last_error=draw(texts),
        dead_reason=draw(texts),
    )


@given(messages(), st.binary(max_size=200))
def test_inline_entries_round_trip(message: QueuedMessage, body: bytes) -> None:
    fields = entry_fields(message, body, 0)
    again, chunks = message_from_fields(fields, lambda *_: None)
    assert chunks == 0 and again == message and again.body.open().read() == body


@given(messages(), st.integers(1, 50))
def test_chunked_entries_name_their_chunks(message: QueuedMessage, count: int) -> None:
    made: list[tuple[str, int]] = []

    def chunk_body(message_id: str, chunks: int) -> BytesBody:
        made.append((message_id, chunks))
        return BytesBody(b"")

    again, chunks = message_from_fields(entry_fields(message, None, count), chunk_body)
    assert (chunks, made, again) == (count, [(message.id, count)], message)


@given(messages())
def test_requeued_messages_are_due_with_failed_recipients_pending(message: QueuedMessage) -> None:
    back = requeued(message)
    assert back.attempts == 0 and back.next_attempt == 0 and not back.dead
    assert [r.status for r in back.recipients] == [
        "pending" if r.status == "failed" else r.status for r in message.recipients
    ]
