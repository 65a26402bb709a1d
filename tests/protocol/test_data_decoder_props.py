"""Property tests for DataDecoder: split invariance and agreement with a plain reference."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpgate.protocol.data import DataDecoder

# Bodies built from the pieces that matter to end-of-data detection, plus arbitrary bytes.
PIECES = [b"\r", b"\n", b".", b"..", b"\r\n", b"\r\n.", b".\r\n", b"\r\n.\r\n", b"a", b"\x00", b"\xff", b"xyz"]
tricky = st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join)
bodies = st.one_of(tricky, st.binary(max_size=200), st.tuples(tricky, st.binary(max_size=30)).map(b"".join))
modes = st.sampled_from(["normalize", "allow", "reject"])


def feed(mode: str, pieces: list[bytes]) -> tuple[bytes, bool, int | None, int, bool]:
    """Feed pieces like the core does; (content, ended, end position, byte_length, bare_lf_seen)."""
    decoder = DataDecoder(mode)
    buf = bytearray()
    out = bytearray()
    position = 0
    for piece in pieces:
        buf += piece
        if decoder.ended:
            continue
        chunk, used = decoder.decode(buf)
        assert 0 <= used <= len(buf)
        del buf[:used]
        position += used
        out += chunk
        if not decoder.ended:
            assert len(buf) <= 4, f"decoder held back {bytes(buf)!r}"
            # Calling again without new input makes no progress and produces nothing.
            assert decoder.decode(buf) == (b"", 0)
    assert decoder.byte_length == len(out)
    return bytes(out), decoder.ended, position if decoder.ended else None, decoder.byte_length, decoder.bare_lf_seen


def reference(data: bytes) -> tuple[bytes, int | None]:
    """The obvious definition: content up to the first CRLF.CRLF (counting the start of
    DATA as a line start), with the leading dot of each line removed."""
    framed = b"\r\n" + data
    idx = framed.find(b"\r\n.\r\n")
    if idx < 0:
        return b"", None
    content = framed[: idx + 2]
    return content.replace(b"\r\n.", b"\r\n")[2:], idx + 5 - 2


def split_at(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({min(p, len(data)) for p in points})
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    return pieces


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(bodies, modes)
def test_every_single_split_point_gives_the_same_result(data, mode):
    whole = feed(mode, [data])
    for i in range(len(data) + 1):
        assert feed(mode, [data[:i], data[i:]]) == whole, f"split at {i}"


@settings(max_examples=300, deadline=None)
@given(bodies, modes, st.lists(st.integers(min_value=0, max_value=240), max_size=12))
def test_any_split_gives_the_same_result(data, mode, points):
    assert feed(mode, split_at(data, points)) == feed(mode, [data])


@settings(max_examples=200, deadline=None)
@given(bodies, modes)
def test_byte_by_byte_gives_the_same_result(data, mode):
    assert feed(mode, [bytes([b]) for b in data]) == feed(mode, [data])


@settings(max_examples=500, deadline=None)
@given(bodies)
def test_allow_mode_matches_the_reference(data):
    content, end = reference(data)
    out, ended, position, _, bare_lf_seen = feed("allow", [data])
    assert ended == (end is not None)
    if ended:
        assert position == end
        assert out == content
        assert bare_lf_seen == bool(re.search(rb"(?<!\r)\n", content))
    else:
        # Not ended: what was handed over is a prefix of the unstuffed input.
        assert (b"\r\n" + data).replace(b"\r\n.", b"\r\n")[2:].startswith(out)


@settings(max_examples=300, deadline=None)
@given(bodies)
def test_normalize_mode_is_allow_mode_with_crlf(data):
    allowed, ended, position, _, seen = feed("allow", [data])
    normalized, ended2, position2, _, seen2 = feed("normalize", [data])
    assert (ended, position, seen) == (ended2, position2, seen2)
    assert normalized == re.sub(rb"(?<!\r)\n", b"\r\n", allowed)
    assert not re.search(rb"(?<!\r)\n", normalized)


@settings(max_examples=300, deadline=None)
@given(bodies, st.sampled_from([b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n\r.\r\n"]), modes)
def test_no_bare_line_ending_ends_data(prefix, separator, mode):
    data = prefix.replace(b"\r\n.\r\n", b"") + b"x" + separator + b"tail"
    if b"\r\n.\r\n" in b"\r\n" + data:
        return  # joining the pieces happened to form a real terminator
    _, ended, _, _, _ = feed(mode, [data])
    assert not ended


@settings(max_examples=200, deadline=None)
@given(bodies, st.binary(max_size=50))
def test_bytes_after_the_terminator_are_left_alone(data, after):
    content, end = reference(data)
    if end is None:
        data = data + b"\r\n.\r\n"
        content, end = reference(data)
    decoder = DataDecoder("allow")
    buf = bytearray(data + after)
    out, used = decoder.decode(buf)
    assert decoder.ended
    assert used == end
    assert bytes(buf[used:]) == data[end:] + after


@pytest.mark.parametrize("mode", ["normalize", "allow", "reject"])
@pytest.mark.parametrize("line", [b"a\r\n", b"a\n"], ids=["crlf", "bare-lf"])
def test_cost_does_not_depend_on_line_count(mode, line):
    """A body of a million short lines decodes in one call (no per-line Python loop), with
    CRLF line ends and with bare LFs."""
    body = line * 1_000_000
    decoder = DataDecoder(mode)
    out, used = decoder.decode(body + b"\r\n.\r\n")
    assert decoder.ended
    assert out == (b"a\r\n" * 1_000_000 if mode == "normalize" else body) + b"\r\n"
    assert used == len(body) + 5
    assert decoder.bare_lf_seen == (line == b"a\n")


@pytest.mark.parametrize("mode", ["normalize", "allow", "reject"])
@pytest.mark.parametrize(
    "body, bare",
    [
        (b"..a\r\nb\nc\r\n", True),  # a bare LF after a dot-stuffed line (found in the output)
        (b"a\nb\r\n..c\r\n", True),  # a bare LF before one (found by the scan)
        (b"a\r\n..b\r\n..c\r\nd\r\n", False),  # dot-stuffed lines, no bare LF
        (b"a\r\n.\nb\r\n", True),  # a dot line whose LF is bare
        (b"\nx\r\n", True),  # a bare LF first
    ],
)
def test_bare_lf_around_dot_stuffed_lines(mode, body, bare):
    decoder = DataDecoder(mode)
    out, used = decoder.decode(body + b".\r\n")
    assert decoder.ended and used == len(body) + 3
    assert decoder.bare_lf_seen == bare
    unstuffed = (b"\r\n" + body).replace(b"\r\n.", b"\r\n")[2:]
    expected = re.sub(rb"(?<!\r)\n", b"\r\n", unstuffed) if mode == "normalize" else unstuffed
    assert out == expected
