"""Property tests for MAIL/RCPT argument parsing and for the core as a whole on random input."""

from __future__ import annotations

import string

from core_support import CoreClient, parse_replies
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpgate import ProtocolConfig
from smtpgate.protocol.addresses import (
    MAX_ADDRESS_LENGTH,
    PLAIN_FROM,
    PLAIN_TO,
    SyntaxProblem,
    _parse_mailbox_fully,
    parse_mailbox,
    parse_params,
    plain_path,
    split_path_argument,
    xtext_decode,
)
from smtpgate.protocol.mail import (
    MailRequest,
    Refusal,
    _parse_mail_in_full,
    _parse_rcpt_in_full,
    parse_mail,
    parse_rcpt,
)
from smtpgate.session import Address, Envelope

CONFIG = ProtocolConfig(name="mx.test", size=1000)
LENIENT = ProtocolConfig(name="mx.test", accept_unknown_params=True, max_recipients=3)

# Text that looks like MAIL/RCPT arguments often enough to get past the first checks.
SYNTAX = ["<", ">", "@", '"', "\\", ":", ",", ".", " ", "=", "+", "[", "]", "FROM:", "TO:", "SIZE", "a", "é", "\x00"]
argument_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(SYNTAX) | st.text(max_size=3), max_size=30).map("".join),
)

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
atom = st.text(ATEXT, min_size=1, max_size=10)
dot_atom = st.lists(atom, min_size=1, max_size=4).map(".".join)
qtext = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'), min_size=0, max_size=12
)
quoted = st.tuples(qtext, st.lists(st.sampled_from(['\\"', "\\\\", "\\ "]), max_size=2)).map(
    lambda parts: '"' + parts[0] + "".join(parts[1]) + '"'
)
label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
domain = st.lists(label, min_size=1, max_size=4).map(".".join)
literal = st.one_of(
    st.ip_addresses(v=4).map(lambda ip: f"[{ip}]"),
    st.ip_addresses(v=6).map(lambda ip: f"[IPv6:{ip}]"),
)
valid_address = st.tuples(st.one_of(dot_atom, quoted), st.one_of(domain, literal)).map("@".join)


@settings(deadline=None)
@given(argument_text, st.booleans(), st.booleans())
def test_parse_mailbox_never_crashes(text, allow_null, allow_postmaster):
    try:
        result = parse_mailbox(text, allow_null=allow_null, allow_postmaster=allow_postmaster)
    except SyntaxProblem as problem:
        assert str(problem)
    else:
        assert isinstance(result, str)
        assert text.endswith(result)  # source routes are dropped, nothing else changes


@settings(deadline=None)
@given(argument_text, st.sampled_from(["FROM", "TO"]))
def test_split_path_argument_never_crashes(text, keyword):
    try:
        path, params = split_path_argument(text, keyword)
    except SyntaxProblem:
        return
    assert f"<{path}>" in text
    assert params == params.strip()


@settings(deadline=None)
@given(st.text(max_size=80))
def test_parse_params_never_crashes(text):
    try:
        params = parse_params(text)
    except SyntaxProblem:
        return
    assert all(key == key.upper() for key in params)
    assert len(params) == len(text.split())


@settings(deadline=None)
@given(argument_text)
def test_parse_mail_and_rcpt_only_refuse(text):
    calls = [
        (parse_mail, text),
        (parse_mail, "FROM:" + text),
        (lambda arg, config: parse_rcpt(arg, config, Envelope()), text),
        (lambda arg, config: parse_rcpt(arg, config, Envelope(smtp_utf8=True)), "TO:" + text),
    ]
    for config in (CONFIG, LENIENT):
        for call, arg in calls:
            try:
                call(arg, config)
            except Refusal as refusal:
                assert 400 <= refusal.code < 600
                assert refusal.text


def outcome(call, *args, **kwargs):
    try:
        return ("ok", call(*args, **kwargs))
    except SyntaxProblem as problem:
        return ("refused", str(problem))


# Near the edges of the one-match fast path: hyphens at label ends, dots, long labels,
# the length limit, non-ASCII, a bare "postmaster".
EDGES = [
    "a",
    "-",
    ".",
    "@",
    "é",
    "0",
    "x" * 63,
    "x" * 64,
    "postmaster",
    '"',
    "[",
    "]",
    "_",
    "\u00ff",
    " ",
    "-.",
    ".-",
    "@-",
]
mailbox_text = st.one_of(
    argument_text,
    valid_address,
    st.lists(st.sampled_from(EDGES) | st.text(ATEXT, max_size=5), max_size=12).map("".join),
    st.integers(MAX_ADDRESS_LENGTH - 3, MAX_ADDRESS_LENGTH + 3).map(lambda n: "a@" + "b" * (n - 2)),
    st.tuples(dot_atom, st.lists(st.sampled_from(EDGES[:7]) | label, min_size=1, max_size=8)).map(
        lambda parts: parts[0] + "@" + "".join(parts[1])
    ),
)


@settings(max_examples=400, deadline=None)
@given(mailbox_text, st.booleans(), st.booleans())
def test_the_fast_path_agrees_with_the_full_checks(text, allow_null, allow_postmaster):
    """parse_mailbox decides the common mailbox in one match: always as the full checks do."""
    options = {"allow_null": allow_null, "allow_postmaster": allow_postmaster}
    assert outcome(parse_mailbox, text, **options) == outcome(_parse_mailbox_fully, text, **options)


def decided(call, *args):
    try:
        result = call(*args)
    except Refusal as refusal:
        return ("refused", refusal.code, refusal.text, refusal.enhanced)
    if isinstance(result, MailRequest):
        return ("ok", result.address, result.body_type, result.smtp_utf8, result.require_tls, result.dsn)
    return ("ok", result)


HIDDEN = ProtocolConfig(name="mx.test", hide_dsn=True, max_recipients=1)
FULL_ENVELOPE = Envelope(rcpt_to=[Address("a@b.test"), Address("C@D.test"), Address("x@y.test")])
# Mostly the usual shape ("FROM:<mailbox>", "TO:<mailbox>"), with its near misses.
whole_argument = st.one_of(
    argument_text,
    st.tuples(
        st.sampled_from(["FROM", "from", "FrOm", "TO", "to", "tO", "FROM ", "TO\u017f", "\u017fTO", " TO", "T\u0130"]),
        st.sampled_from([":<", ":<", ":<", ":<", ": <", "<", ":"]),
        st.one_of(mailbox_text, st.sampled_from(["a@b.test", "c@d.test", "X@Y.TEST", "n@new.test", ""])),
        st.sampled_from([">", ">", ">", ">", "> SIZE=10", "> NOTIFY=NEVER", ">x", "", "> ", ">>", "\r\n>"]),
    ).map("".join),
)


@settings(max_examples=500, deadline=None)
@given(whole_argument)
def test_the_whole_argument_fast_path_agrees_with_the_full_parse(argument):
    """MAIL and RCPT decide "FROM:<plain mailbox>" in one match: always as the full parse does."""
    for config in (CONFIG, LENIENT, HIDDEN):
        assert decided(parse_mail, argument, config) == decided(_parse_mail_in_full, argument, config, False)
        for envelope in (Envelope(), FULL_ENVELOPE):
            fast = decided(parse_rcpt, argument, config, envelope)
            assert fast == decided(_parse_rcpt_in_full, argument, config, envelope)


def test_the_usual_arguments_take_the_whole_argument_fast_path():
    assert plain_path("FROM:<a@bench.local>", PLAIN_FROM) == "a@bench.local"
    assert plain_path("to:<first.last+tag@mail-1.example.com>", PLAIN_TO) == "first.last+tag@mail-1.example.com"
    for other in ["FROM: <a@b.test>", "FROM:<a@b.test> SIZE=1", "FROM:<>", "FROM:<a@-b.test>", "TO:<a@b.test>"]:
        assert plain_path(other, PLAIN_FROM) is None, other


def split_with_the_pattern_only(argument: str, keyword: str):
    """split_path_argument with its fast path for a plain ``FROM:`` disabled."""
    return split_path_argument(" " + argument if argument[:1] != " " else argument, keyword)


@settings(max_examples=300, deadline=None)
@given(argument_text, st.sampled_from(["FROM", "TO"]))
def test_the_plain_keyword_fast_path_agrees_with_the_pattern(text, keyword):
    # A leading space is allowed by the pattern and skips the fast path, so the two agree
    # exactly when the fast path does what the pattern would.
    assert outcome(split_path_argument, text, keyword) == outcome(split_with_the_pattern_only, text, keyword)


@settings(max_examples=150, deadline=None)
@given(valid_address)
def test_valid_addresses_round_trip(address):
    if len(address.encode()) > 254:
        return
    assert parse_mailbox(address, allow_null=False, allow_postmaster=False) == address
    assert split_path_argument(f"FROM:<{address}>", "FROM") == (address, "")
    assert parse_mail(f"FROM:<{address}> SIZE=10", CONFIG).address.address == address
    assert parse_rcpt(f"TO:<{address}>", CONFIG, Envelope()).address == address


@settings(max_examples=80, deadline=None)
@given(valid_address, st.lists(domain, min_size=1, max_size=3))
def test_source_routes_are_dropped(address, relays):
    if len(address.encode()) > 254:
        return
    route = ",".join("@" + relay for relay in relays)
    assert parse_mailbox(f"{route}:{address}", allow_null=False, allow_postmaster=False) == address


@settings(max_examples=80, deadline=None)
@given(valid_address, st.sampled_from(["", " ", "\t"]), st.sampled_from(["", " "]))
def test_spacing_around_the_colon(address, before, after):
    if len(address.encode()) > 254:
        return
    path, _ = split_path_argument(f"FROM{before}:{after}<{address}> BODY=8BITMIME", "FROM")
    assert path == address


def xtext_encode(value: str) -> str:
    return "".join(ch if 33 <= ord(ch) <= 126 and ch not in "+=" else f"+{ord(ch):02X}" for ch in value)


param_key = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,10}", fullmatch=True)
param_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


@settings(deadline=None)
@given(st.dictionaries(param_key, st.one_of(st.just(True), param_value), max_size=6))
def test_params_round_trip(params):
    upper = {}
    for key, value in params.items():
        upper.setdefault(key.upper(), value)
    if len(upper) != len(params):
        return  # duplicate keys differing in case: refused, tested elsewhere
    text = " ".join(key if value is True else f"{key}={xtext_encode(value)}" for key, value in params.items())
    assert parse_params(text) == upper


@settings(deadline=None)
@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30))
def test_xtext_round_trip(value):
    assert xtext_decode(xtext_encode(value)) == value


configs = st.fixed_dictionaries(
    {
        "bare_lf": st.sampled_from(["normalize", "reject", "allow"]),
        "size": st.sampled_from([0, 10, 1000]),
        "max_recipients": st.sampled_from([0, 1, 3]),
        "hide_enhancedstatuscodes": st.booleans(),
        "max_unrecognized_commands": st.sampled_from([2, 10]),
        "lmtp": st.booleans(),
    }
)
fragments = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"EHLO a\r\n",
        b"LHLO a\r\n",
        b"MAIL FROM:<a@b.c>\r\n",
        b"RCPT TO:<d@e.f>\r\n",
        b"DATA\r\n",
        b".\r\n",
        b"\r\n.\r\n",
        b"RSET\r\n",
        b"BDAT 3\r\n",
        b"BDAT 2 LAST\r\n",
        b"NOOP\r\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(configs, st.lists(st.binary(max_size=40) | fragments, max_size=25))
def test_core_survives_random_input(config, pieces):
    """Random bytes and command fragments under varied options: no exception, every reply
    well formed, every decision answered, and EOF always ends the session."""
    client = CoreClient(max_command_length=512, **config)
    out = client.send(b"LHLO fuzz.test\r\n" if config["lmtp"] else b"EHLO fuzz.test\r\n")
    for piece in pieces:
        out += client.send(piece)
    out += client.eof()
    replies = parse_replies(out)
    assert replies[0][0] == 250
    assert all(200 <= code < 600 for code, _ in replies)
    assert client.closed
    assert client.core.awaiting is None
    final = [i for i, (code, _) in enumerate(replies) if code in (221, 421)]
    assert not final or final[0] == len(replies) - 1, "a reply after 221/421"
    for envelope, _, _ in client.messages:
        assert envelope.mail_from is not None
        assert envelope.rcpt_to


def test_the_common_mailboxes_take_the_fast_path():
    from smtpgate.protocol.addresses import _is_plain_mailbox

    for plain in ["b@bench.local", "first.last+tag@mail-1.example.com", "x@" + "y" * 63 + ".test"]:
        assert _is_plain_mailbox(plain), plain
    for other in ["a@-b.test", "a@b-.test", "a@b..test", ".a@b.test", "a.@b.test", "a@b.test.", "a@" + "y" * 64 + ".t"]:
        assert not _is_plain_mailbox(other), other
