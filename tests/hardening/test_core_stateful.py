"""Stateful property tests of the sans-I/O core: random sessions, checked byte by byte.

Hypothesis drives :class:`ServerProtocol` with random command sequences (valid, invalid,
pipelined, bodies with smuggling attempts, BDAT chunks, over-long lines, binary junk).
Every step's bytes go to three cores:

* a *live* core, fed in random pieces (one piece, byte by byte, or a random split);
* a *checker* core, fed one byte at a time, whose output after every byte is checked
  against a small model of SMTP framing:

  - every reply line is ``ddd[ -]text CRLF``, continuation lines share the code, and
    output always ends on a complete reply;
  - in command mode, a reply appears only when a line's LF arrives, and then exactly one
    final reply (or one 354 after DATA);
  - inside DATA nothing is answered and no ``DataEnd`` appears until the byte that
    completes ``CRLF . CRLF`` (the start of the body counts as a line start); then
    ``DataEnd`` and the final reply(ies) come at once, and the message bytes equal an
    independent dot-unstuffing of what was sent;
  - inside a BDAT chunk nothing is answered until its last byte;
  - ``DataStart`` (DATA or BDAT) only after a 250 to MAIL and at least one 250 to RCPT;
* at the end, a *one-piece* core that gets the whole session at once.

All three must write the same replies and see the same messages.
"""

from __future__ import annotations

import random
import re

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from smtpgate.errors import SMTPError
from smtpgate.protocol.core import ProtocolConfig, ServerProtocol
from smtpgate.protocol.events import (
    BodyAborted,
    CloseConnection,
    DataChunk,
    DataEnd,
    DataStart,
    MailFrom,
    RcptTo,
)
from smtpgate.session import Session

REPLY_LINE = re.compile(rb"(\d{3})([ -])([^\r\n]*)\r\n")
INTERMEDIATE = {354, 334}
MAX_LINE = 512

# ----------------------------------------------------------------------------- driving


class Driver:
    """A core plus the deterministic decisions a handler would make."""

    def __init__(self, config: ProtocolConfig) -> None:
        self.core = ServerProtocol(config, Session(id="test"))
        self.core.start()
        self.output = bytearray(self.core.data_to_send())
        self.messages: list[bytes] = []
        self.events: list[object] = []
        self._body: bytearray | None = None
        self.closed = False

    def feed(self, data: bytes) -> tuple[bytes, list[object]]:
        """Feed ``data`` (may be empty), run the core until it waits; new output and events."""
        if data:
            self.core.receive_data(data)
        return self.drive()

    def eof(self) -> tuple[bytes, list[object]]:
        self.core.receive_eof()
        return self.drive()

    def drive(self) -> tuple[bytes, list[object]]:
        events: list[object] = []
        for _ in range(100_000):
            if self.closed:
                break
            event = self.core.next_event()
            if event is None:
                break
            events.append(event)
            if isinstance(event, CloseConnection):
                self.closed = True
                break
            if isinstance(event, DataStart):
                self._body = bytearray()
            elif isinstance(event, DataChunk):
                assert self._body is not None, "DataChunk outside a message"
                assert event.data, "empty DataChunk"
                self._body += event.data
            elif isinstance(event, BodyAborted):
                self._body = None
            if event.needs_decision:
                self._decide(event)
        else:  # pragma: no cover - a core that never stops producing events
            raise AssertionError("core produced events forever")
        out = self.core.data_to_send()
        self.output += out
        self.events.extend(events)
        return out, events

    def _decide(self, event: object) -> None:
        core = self.core
        if isinstance(event, MailFrom):
            if "reject" in event.address.address:
                core.reject(SMTPError(550, "sender refused"))
            else:
                core.accept()
        elif isinstance(event, RcptTo):
            local = event.address.address.lower()
            if local.startswith("bad"):
                core.reject(SMTPError(550, "No such user"))
            elif local.startswith("tmp"):
                core.reject(SMTPError(451, "try later"))
            elif local.startswith("close"):
                core.reject(SMTPError(421, "going away"))
            else:
                core.accept("recipient ok\r\nwith an injected line")
        elif isinstance(event, DataEnd):
            body = bytes(self._body or b"")
            self._body = None
            # A body refused for a bare LF never reaches a handler: what was passed on
            # before the bare LF was seen depends on the packet boundaries.
            refused = event.bare_lf and core.config.bare_lf == "reject"
            self.messages.append(b"<refused: bare LF>" if refused else body)
            if b"REJECT" in body:
                core.reject(SMTPError(554, "content refused"))
            elif b"MULTI" in body:
                core.accept("queued\nas\r\nthree lines")
            else:
                core.accept()
        else:
            core.accept()


def parse_replies(data: bytes) -> list[tuple[int, list[bytes]]]:
    """Split output into replies; assert the framing while doing it."""
    replies: list[tuple[int, list[bytes]]] = []
    pos = 0
    pending: list[bytes] = []
    code = None
    while pos < len(data):
        match = REPLY_LINE.match(data, pos)
        assert match is not None, f"malformed reply line at {data[pos : pos + 80]!r}"
        line_code = int(match.group(1))
        assert 200 <= line_code <= 599, f"reply code out of range: {match.group(0)!r}"
        if code is not None:
            assert line_code == code, f"continuation line changes the code: {data!r}"
        code = line_code
        pending.append(match.group(3))
        pos = match.end()
        if match.group(2) == b" ":
            replies.append((code, pending))
            pending, code = [], None
    assert not pending, f"output ends inside a multi-line reply: {data!r}"
    return replies


def reference_message(raw: bytes, bare_lf: str) -> bytes:
    """Dot-unstuffing (only CRLF starts a line) and the bare-LF policy, the slow obvious way."""
    lines = raw.split(b"\r\n")
    unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    if bare_lf == "normalize":
        unstuffed = re.sub(rb"(?<!\r)\n", b"\r\n", unstuffed)
    return unstuffed


# ----------------------------------------------------------------------------- the checker


class Checker:
    """A driver fed byte by byte, with a model of where replies may appear."""

    def __init__(self, config: ProtocolConfig) -> None:
        self.config = config
        self.driver = Driver(config)
        greeting = parse_replies(bytes(self.driver.output))
        assert [code for code, _ in greeting] == [220]
        self.mode = "command"  # command | data | bdat | closed
        self.line = bytearray()
        self.body = bytearray()  # DATA: raw bytes since the 354
        self.bdat_left = 0
        self.bdat_payload = bytearray()  # accepted BDAT chunk bytes of this transaction
        self.bdat_in_transaction = False
        self.mail_ok = False
        self.rcpts = 0
        self.rcpt_set: set[str] = set()
        self.messages_checked = 0
        self.bytes_fed = 0

    def feed(self, data: bytes) -> None:
        for i in range(len(data)):
            self._byte(data[i : i + 1])

    def _reset_envelope(self) -> None:
        self.mail_ok = False
        self.rcpts = 0
        self.rcpt_set: set[str] = set()
        self.bdat_payload = bytearray()
        self.bdat_in_transaction = False

    def _byte(self, b: bytes) -> None:
        self.bytes_fed += 1
        mode = self.mode
        out, events = self.driver.feed(b)
        replies = parse_replies(out)
        where = f"byte {self.bytes_fed} ({b!r}) in {mode} mode"
        closing = [e for e in events if isinstance(e, CloseConnection)]
        if mode == "closed":
            assert not out and not events, f"{where}: output after close: {out!r} {events!r}"
            return
        for event in events:
            if isinstance(event, DataStart):
                assert self.mail_ok and self.rcpts > 0, f"{where}: DataStart without MAIL and RCPT accepted"
            if isinstance(event, DataEnd):
                assert mode in ("data", "bdat") or b == b"\n", f"{where}: DataEnd outside a message"
        if mode == "command":
            self._command_byte(b, replies, events, where)
        elif mode == "data":
            self._data_byte(b, replies, events, where)
        else:
            self._bdat_byte(b, replies, events, where)
        if closing:
            self.mode = "closed"
        else:
            assert not self.driver.core.closed

    def _command_byte(self, b: bytes, replies: list, events: list, where: str) -> None:
        if len(self.line) < 64:
            self.line += b
        if b != b"\n":
            assert not replies, f"{where}: reply before the end of the line: {replies!r}"
            assert not any(isinstance(e, (DataEnd, DataStart)) for e in events), f"{where}: {events!r}"
            return
        line, self.line = bytes(self.line), bytearray()
        verb = line.split(b" ", 1)[0].strip().upper()
        if verb != b"BDAT":
            assert not any(isinstance(e, DataEnd) for e in events), f"{where}: DataEnd after {line!r}"
        is_bdat_start = any(isinstance(e, DataStart) for e in events) and verb == b"BDAT"
        if is_bdat_start:
            self.bdat_in_transaction = True
        if replies and replies[-1][0] == 421 and len(replies) > 1 and self.driver.closed:
            # A final reply, then the unsolicited 421 of a connection being closed for
            # too many errors (Postfix does the same).
            replies = replies[:-1]
        if not replies:
            # Only a BDAT with a chunk to read (or to skip) answers later.
            assert verb == b"BDAT", f"{where}: no reply to the line {line!r}"
            assert not any(isinstance(e, CloseConnection) for e in events)
            size = int(line.split()[1])
            assert size > 0, f"{where}: BDAT 0 left unanswered"
            self.mode = "bdat"
            self.bdat_left = size
            self.bdat_accepting = self.bdat_in_transaction
            return
        finals = [code for code, _ in replies if code not in INTERMEDIATE]
        intermediates = [code for code, _ in replies if code in INTERMEDIATE]
        if intermediates:
            assert replies == [(354, replies[0][1])], f"{where}: {replies!r}"
            assert verb == b"DATA", f"{where}: 354 to {line!r}"
            assert self.mail_ok and self.rcpts > 0, f"{where}: 354 without MAIL and RCPT accepted"
            self.mode = "data"
            self.body = bytearray()
            return
        if verb == b"BDAT" and any(isinstance(e, DataEnd) for e in events):
            # BDAT 0 LAST: the message ends on the command line itself.
            self._message_end(finals, where, bytes(self.bdat_payload))
            return
        assert len(finals) == 1, f"{where}: {len(finals)} final replies to the line {line!r}: {replies!r}"
        code = finals[0]
        if code == 250 and verb in (b"HELO", b"EHLO", b"LHLO", b"RSET"):
            self._reset_envelope()
        elif code == 250 and verb == b"MAIL":
            self.mail_ok = True
        elif code == 250 and verb == b"RCPT":
            # The core keeps one entry per address (case-insensitive): LMTP answers each once.
            accepted = [e.address.address.lower() for e in events if isinstance(e, RcptTo)]
            assert len(accepted) == 1, f"{where}: 250 to RCPT without an accepted RcptTo"
            self.rcpt_set.add(accepted[0])
            self.rcpts = len(self.rcpt_set)
        elif verb == b"MAIL" and self.mail_ok is False:
            self._reset_envelope()

    def _data_byte(self, b: bytes, replies: list, events: list, where: str) -> None:
        self.body += b
        ended = (b"\r\n" + bytes(self.body)).endswith(b"\r\n.\r\n")
        has_end = any(isinstance(e, DataEnd) for e in events)
        if not ended:
            assert not replies, f"{where}: reply inside DATA: {replies!r}"
            assert not has_end, f"{where}: DataEnd before the terminator"
            return
        assert has_end, f"{where}: no DataEnd at the terminator"
        raw = bytes(self.body[:-3])
        finals = [code for code, _ in replies]
        bare = re.search(rb"(?<!\r)\n", raw) is not None
        if self.config.bare_lf == "reject" and bare:
            assert all(code == 550 for code in finals), f"{where}: bare LF not refused: {replies!r}"
            self._message_end(finals, where, None)
        else:
            self._message_end(finals, where, reference_message(raw, self.config.bare_lf))

    def _bdat_byte(self, b: bytes, replies: list, events: list, where: str) -> None:
        self.bdat_left -= 1
        chunks = b"".join(e.data for e in events if isinstance(e, DataChunk))
        if self.bdat_accepting:
            self.bdat_payload += b
            assert chunks == b, f"{where}: BDAT chunk byte {b!r} became {chunks!r}"
        else:
            assert chunks == b"", f"{where}: refused BDAT chunk reached the application"
        if self.bdat_left:
            assert not replies, f"{where}: reply inside a BDAT chunk: {replies!r}"
            assert not any(isinstance(e, DataEnd) for e in events)
            return
        self.mode = "command"
        finals = [code for code, _ in replies]
        if any(isinstance(e, DataEnd) for e in events):
            self._message_end(finals, where, bytes(self.bdat_payload))
        else:
            assert len(finals) == 1, f"{where}: {replies!r} at the end of a BDAT chunk"

    def _message_end(self, finals: list[int], where: str, expected: bytes | None) -> None:
        expected_replies = self.rcpts if self.config.lmtp else 1
        assert len(finals) == expected_replies, f"{where}: {finals} replies for {self.rcpts} recipients"
        assert all(code not in INTERMEDIATE for code in finals)
        if expected is not None:
            got = self.driver.messages[-1]
            assert got == expected, f"{where}: message {got!r} != expected {expected!r}"
        self.messages_checked += 1
        self.mode = "command"
        self._reset_envelope()


# ----------------------------------------------------------------------------- strategies

hosts = st.sampled_from(["client.example", "[127.0.0.1]", "x", "", "a b", "h\u00e9.example"])
locals_ = st.sampled_from(["alice", "bob", "bad", "tmp", "close", "reject", '"q p"', "\u00e9l\u00e8ve", "a..b", ""])
domains = st.sampled_from(["example.com", "[10.0.0.1]", "-bad-", "ex_ample.com", ""])
params = st.sampled_from(
    ["", " SIZE=100", " SIZE=99999999", " BODY=8BITMIME", " BODY=BINARYMIME", " SMTPUTF8", " X=1", " SIZE", " RET=HDRS"]
)
rcpt_params = st.sampled_from(["", " NOTIFY=NEVER", " NOTIFY=SUCCESS,NEVER", " ORCPT=rfc822;a@b", " FOO"])
endings = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r\r\n"])


@st.composite
def address(draw: st.DrawFn) -> str:
    local = draw(locals_)
    domain = draw(domains)
    return f"{local}@{domain}" if draw(st.booleans()) or not local else local


@st.composite
def command_line(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            ["ehlo", "helo", "lhlo", "mail", "mail", "rcpt", "rcpt", "rcpt", "data", "rset", "noop", "misc", "junk"]
            + ["bdat", "long", "binary", "case"]
        )
    )
    if kind in ("ehlo", "helo", "lhlo"):
        text = f"{kind.upper()} {draw(hosts)}"
    elif kind == "mail":
        text = f"MAIL FROM:<{draw(address())}>{draw(params)}"
    elif kind == "rcpt":
        text = f"RCPT TO:<{draw(address())}>{draw(rcpt_params)}"
    elif kind == "data":
        text = draw(st.sampled_from(["DATA", "DATA", "DATA x", "data"]))
    elif kind == "rset":
        text = draw(st.sampled_from(["RSET", "RSET now"]))
    elif kind == "noop":
        text = "NOOP"
    elif kind == "misc":
        text = draw(st.sampled_from(["VRFY bob", "VRFY", "HELP", "EXPN list", "STARTTLS", "AUTH PLAIN", "XCLIENT"]))
    elif kind == "bdat":
        # Only syntactically valid BDAT: a bad one closes the connection (tested below).
        size = draw(st.integers(0, 12))
        text = f"BDAT {size}{draw(st.sampled_from(['', ' LAST', ' last']))}"
    elif kind == "long":
        size = draw(st.sampled_from([MAX_LINE - 3, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + 2, 3 * MAX_LINE]))
        return ("NOOP " + "x" * (size - 5)).encode() + draw(endings)
    elif kind == "binary":
        return draw(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b""))) + b"\n"
    elif kind == "case":
        text = draw(
            st.sampled_from(["mail from:<a@example.com>", "rcpt to:<b@example.com>", "ehlo X", "GET / HTTP/1.1"])
        )
    else:
        text = draw(st.text(alphabet="ABCDEFGHIJ :<>@.\t\x00\x7f\u00e9", max_size=20))
    return text.encode() + draw(endings)


body_pieces = st.sampled_from(
    [b"Subject: hi\r\n", b"\r\n", b"line\r\n", b".\r\n", b"..dot\r\n", b".x\r\n", b"\n.\n", b"\r.\r", b"\n.\r\n"]
    + [b"\r\n.\n", b"bare\nlf", b"\r", b"\n", b".", b"REJECT", b"MULTI", b"\x00\xff", b"x" * 40]
)


class CoreMachine(RuleBasedStateMachine):
    @initialize(
        lmtp=st.booleans(),
        bare_lf=st.sampled_from(["normalize", "reject", "allow"]),
        size=st.sampled_from([0, 30]),
        max_bad=st.sampled_from([4, 50]),
    )
    def setup(self, lmtp: bool, bare_lf: str, size: int, max_bad: int) -> None:
        self.config = ProtocolConfig(
            name="mx.test",
            lmtp=lmtp,
            bare_lf=bare_lf,
            size=size,
            max_command_length=MAX_LINE,
            max_unrecognized_commands=max_bad,
            max_recipients=3,
        )
        self.checker = Checker(self.config)
        self.live = Driver(self.config)
        self.script = bytearray()

    def _send(self, data: bytes, split: int) -> None:
        self.script += data
        self.checker.feed(data)
        if split == 0:
            self.live.feed(data)
        elif split == 1:
            for i in range(len(data)):
                self.live.feed(data[i : i + 1])
        else:
            rng = random.Random(split)
            pos = 0
            while pos < len(data):
                step = rng.randint(1, 8)
                self.live.feed(data[pos : pos + step])
                pos += step
        self.live.feed(b"")

    @rule(line=command_line(), split=st.integers(0, 50))
    def command(self, line: bytes, split: int) -> None:
        self._send(line, split)

    @rule(lines=st.lists(command_line(), min_size=2, max_size=6), split=st.integers(0, 50))
    def pipelined(self, lines: list[bytes], split: int) -> None:
        self._send(b"".join(lines), split)

    @rule(
        rcpts=st.lists(
            st.sampled_from(["bob@example.com", "carol@x.example", "bad@example.com"]), min_size=1, max_size=3
        ),
        start=st.sampled_from([b"", b"DATA\r\n", b"BDAT 5\r\n12345", b"BDAT 3 LAST\r\nabc"]),
        split=st.integers(0, 50),
    )
    def transaction_start(self, rcpts: list[str], start: bytes, split: int) -> None:
        """A whole pipelined envelope (RFC 2920), sometimes with the DATA or first BDAT behind it."""
        lhlo = b"LHLO" if self.config.lmtp else b"EHLO"
        script = lhlo + b" c.example\r\nMAIL FROM:<a@example.com>\r\n"
        script += b"".join(b"RCPT TO:<" + r.encode() + b">\r\n" for r in rcpts)
        self._send(script + start, split)

    @precondition(lambda self: self.checker.mode == "data")
    @rule(pieces=st.lists(body_pieces, max_size=8), end=st.booleans(), split=st.integers(0, 50))
    def body(self, pieces: list[bytes], end: bool, split: int) -> None:
        self._send(b"".join(pieces) + (b"\r\n.\r\n" if end else b""), split)

    @precondition(lambda self: self.checker.mode == "bdat")
    @rule(payload=st.binary(min_size=1, max_size=12), split=st.integers(0, 50))
    def bdat_payload(self, payload: bytes, split: int) -> None:
        self._send(payload[: self.checker.bdat_left], split)

    @invariant()
    def live_matches_checker(self) -> None:
        if not hasattr(self, "live"):
            return
        assert bytes(self.live.output) == bytes(self.checker.driver.output), "split feeding changed the replies"
        assert self.live.messages == self.checker.driver.messages, "split feeding changed the messages"
        assert self.live.closed == self.checker.driver.closed

    def teardown(self) -> None:
        if not hasattr(self, "live"):
            return
        whole = Driver(self.config)
        whole.feed(bytes(self.script))
        assert bytes(whole.output) == bytes(self.checker.driver.output), "one-piece feeding changed the replies"
        assert whole.messages == self.checker.driver.messages, "one-piece feeding changed the messages"
        # EOF: the connection closes; a message cut short is never ended.
        mode = self.checker.mode
        note_event(f"messages checked: {min(self.checker.messages_checked, 3)}")
        note_event(f"mode at the end: {mode}")
        for driver in (whole, self.live):
            _, events = driver.eof()
            assert not any(isinstance(e, DataEnd) for e in events), f"DataEnd after EOF in {mode} mode"
            assert driver.closed or mode == "closed"


TestCoreMachine = CoreMachine.TestCase
TestCoreMachine.settings = settings(
    max_examples=250,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# ----------------------------------------------------------------------------- directed cases


def run_split(config: ProtocolConfig, script: bytes) -> tuple[bytes, bytes, list[bytes], list[bytes]]:
    whole = Driver(config)
    whole.feed(script)
    bytewise = Driver(config)
    for i in range(len(script)):
        bytewise.feed(script[i : i + 1])
    return bytes(whole.output), bytes(bytewise.output), whole.messages, bytewise.messages


def test_smuggling_variants_never_end_data() -> None:
    config = ProtocolConfig(name="mx.test")
    head = b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
    for fake in (b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"):
        script = head + b"x" + fake + b"MAIL FROM:<evil@example.com>\r\n" + b"\r\n.\r\n"
        checker = Checker(config)
        checker.feed(script)
        assert checker.messages_checked == 1
        assert b"MAIL FROM:<evil@example.com>" in checker.driver.messages[0]
        whole, bytewise, m1, m2 = run_split(config, script)
        assert whole == bytewise and m1 == m2


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(command_line(), min_size=1, max_size=8),
    body=st.lists(body_pieces, max_size=10),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
)
def test_any_split_gives_the_same_session(lines: list[bytes], body: list[bytes], cuts: list[int]) -> None:
    """One piece, byte by byte and arbitrary cut points: same replies, same messages."""
    config = ProtocolConfig(name="mx.test", max_command_length=MAX_LINE)
    script = b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
    script += b"".join(body) + b"\r\n.\r\n" + b"".join(lines)
    whole, bytewise, m1, m2 = run_split(config, script)
    assert whole == bytewise
    assert m1 == m2
    cut = Driver(config)
    pos = 0
    for point in sorted({c % (len(script) + 1) for c in cuts} | {len(script)}):
        cut.feed(script[pos:point])
        pos = point
    assert bytes(cut.output) == whole and cut.messages == m1


@pytest.mark.parametrize(
    ("length", "ending"), [(MAX_LINE, b"\r\n"), (MAX_LINE - 1, b"\r\r\n"), (MAX_LINE + 1, b"\r\n")]
)
def test_line_at_the_limit_same_reply_however_split(length: int, ending: bytes) -> None:
    """Found by the state machine: a read ending between CR and LF used to turn a line of exactly
    max_command_length octets into '500 line too long'."""
    config = ProtocolConfig(name="mx.test", max_command_length=MAX_LINE)
    script = b"NOOP " + b"x" * (length - 5) + ending
    whole, bytewise, _, _ = run_split(config, script)
    assert bytewise == whole
    cut = Driver(config)
    cut.feed(script[:-1])
    cut.feed(script[-1:])
    assert bytes(cut.output) == whole


def test_long_bare_lf_line_same_reply_however_split() -> None:
    """Found by the state machine (fixed in 7e01ba3): with bare_lf='reject' an over-long line ending
    in a bare LF was answered 'bare <LF>' in one read and 'line too long' in pieces."""
    config = ProtocolConfig(name="mx.test", max_command_length=MAX_LINE, bare_lf="reject")
    script = b"NOOP " + b"x" * (MAX_LINE + 2 - 5) + b"\n"
    whole, bytewise, _, _ = run_split(config, script)
    assert bytewise == whole


def test_long_sasl_line_same_reply_however_split() -> None:
    config = ProtocolConfig(
        name="mx.test", max_command_length=MAX_LINE, auth_methods=("LOGIN",), allow_insecure_auth=True
    )
    script = b"EHLO c\r\nAUTH LOGIN\r\n" + b"A" * (MAX_LINE + 88) + b"\r\nNOOP\r\n"
    whole, bytewise, _, _ = run_split(config, script)
    assert bytewise == whole
    assert whole.endswith(b"250 2.0.0 OK\r\n")
