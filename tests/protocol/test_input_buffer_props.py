"""InputBuffer against a plain model: holding a chunk as it came changes no answer."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from smtpgate.protocol import buffer as buffer_module
from smtpgate.protocol.buffer import InputBuffer

# Compiled, feed() refuses anything but bytes; interpreted, a bytearray must be copied.
INTERPRETED = buffer_module.__file__ is not None and buffer_module.__file__.endswith(".py")


@dataclass
class Model:
    """The buffer's contract in the simplest terms: one bytes object of what is pending."""

    pending: bytes = b""
    discarding: bool = False

    def feed(self, chunk: bytes) -> bool:
        ended = False
        if self.discarding:
            idx = chunk.find(b"\n")
            if idx < 0:
                return False
            chunk = chunk[idx + 1 :]
            self.discarding = False
            ended = True
        self.pending += chunk
        return ended

    def next_line(self, limit: int) -> bytes | None:
        idx = self.pending.find(b"\n")
        if idx < 0:
            self.drop_overlong(limit)
            return None
        line, self.pending = self.pending[: idx + 1], self.pending[idx + 1 :]
        return line

    def take(self, count: int) -> bytes:
        chunk, self.pending = self.pending[:count], self.pending[count:]
        return chunk

    def drop_overlong(self, limit: int) -> None:
        size = len(self.pending) - (1 if self.pending.endswith(b"\r") else 0)
        if size > limit and b"\n" not in self.pending:
            self.pending = b""
            self.discarding = True


LINE_BYTES = st.sampled_from([b"A", b"\r", b"\n", b"\r\n", b".", b"MAIL FROM:<a@b>\r\n", b"x" * 9])
CHUNKS = st.lists(LINE_BYTES, min_size=0, max_size=6).map(b"".join)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("feed"), CHUNKS),
        *([st.tuples(st.just("feed_bytearray"), CHUNKS)] if INTERPRETED else []),
        st.tuples(st.just("line"), st.integers(1, 12)),
        st.tuples(st.just("take"), st.integers(1, 30)),
        st.tuples(st.just("compact"), st.none()),
        st.tuples(st.just("drop"), st.integers(1, 12)),
        st.tuples(st.just("clear"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=600, deadline=None)
@given(OPS)
def test_the_buffer_answers_like_the_plain_model(ops: list[tuple[str, object]]) -> None:
    buffer, model = InputBuffer(), Model()
    for op, arg in ops:
        if op == "feed" or op == "feed_bytearray":
            assert isinstance(arg, bytes)
            chunk = bytearray(arg) if op == "feed_bytearray" else arg
            assert buffer.feed(chunk) == model.feed(arg)  # type: ignore[arg-type]
            if isinstance(chunk, bytearray):
                chunk[:] = b"!" * len(chunk)  # the caller reuses its buffer: nothing may change
        elif op == "line":
            assert isinstance(arg, int)
            assert buffer.next_line(arg) == model.next_line(arg)
        elif op == "take":
            assert isinstance(arg, int)
            if model.pending:  # (the core takes only when something is pending)
                assert buffer.take(arg) == model.take(arg)
        elif op == "compact":
            buffer.compact()
            assert bytes(buffer.data) == model.pending and buffer.held is None
        elif op == "drop":
            assert isinstance(arg, int)
            buffer.drop_overlong(arg)
            model.drop_overlong(arg)
        else:
            buffer.clear()
            model.pending = b""
        assert buffer.pending == len(model.pending)
        assert buffer.discarding == model.discarding


def test_a_lone_command_is_handed_on_as_the_bytes_that_came() -> None:
    buffer = InputBuffer()
    received = b"RCPT TO:<b@example.org>\r\n"
    buffer.feed(received)
    assert buffer.next_line(512) is received
    assert buffer.pending == 0 and buffer.held is None
    # Two lines in one chunk: the first is a copy, the second the rest.
    buffer.feed(b"NOOP\r\nQUIT\r\n")
    assert buffer.next_line(512) == b"NOOP\r\n"
    assert buffer.next_line(512) == b"QUIT\r\n"
    assert buffer.next_line(512) is None
