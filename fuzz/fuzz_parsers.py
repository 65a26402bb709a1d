"""Coverage-guided fuzzing of smtpgate's parsers with atheris (libFuzzer for Python).

Targets (pick one with ``--target NAME``; ``fuzz/run`` runs them all):

``commands``  a whole client byte stream into :class:`ServerProtocol` (SMTP or LMTP, AUTH
              on, BDAT, pipelining), driven by a handler that accepts or refuses from
              bits of the input. Oracle: no exception escapes the core; every reply line
              is ``ddd[ -]text CRLF`` with one code per reply; the core never loops; the
              same bytes fed in one piece and in input-chosen pieces give the same replies
              and the same messages.
``mail``      MAIL FROM / RCPT TO arguments: ``split_path_argument``, ``parse_mailbox``,
              ``parse_params``, ``parse_mail``, ``parse_rcpt``. Oracle: only
              ``SyntaxProblem``/``Refusal``; an accepted address has no control characters
              and is at most 254 octets.
``proxy``     PROXY v1/v2 headers: ``header_length`` then ``parse_proxy_header`` (as the
              listener calls them). Oracle: only ``ProxyError``; a length is never beyond
              the input's limits; ports are 0..65535 and addresses parse back.
``data``      the DATA decoder fed in input-chosen pieces, against a slow reference
              (end at the first CRLF.CRLF, dot-unstuffing, bare-LF policy).

Without atheris (``--no-atheris`` or when it does not import) the same targets run under
a small time-boxed mutation fuzzer over the seed corpus (not coverage-guided).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

try:  # pragma: no cover - depends on the environment
    if "--no-atheris" in sys.argv:
        raise ImportError("disabled")
    import atheris

    with atheris.instrument_imports(include=["smtpgate"]):
        from smtpgate.errors import SMTPError
        from smtpgate.protocol import addresses as addresses_module
        from smtpgate.protocol.core import ProtocolConfig, ServerProtocol
        from smtpgate.protocol.data import DataDecoder
        from smtpgate.protocol.events import AuthAttempt, CloseConnection, DataChunk, DataEnd, MailFrom, RcptTo
        from smtpgate.protocol.mail import Refusal, parse_mail, parse_rcpt
        from smtpgate.proxy import MAX_V1_LENGTH, MAX_V2_LENGTH, ProxyError, header_length, parse_proxy_header
        from smtpgate.sasl import AuthResult, XOAuth2Error
        from smtpgate.session import Envelope, Session
    HAVE_ATHERIS = True
except ImportError:
    HAVE_ATHERIS = False
    from smtpgate.errors import SMTPError
    from smtpgate.protocol import addresses as addresses_module
    from smtpgate.protocol.core import ProtocolConfig, ServerProtocol
    from smtpgate.protocol.data import DataDecoder
    from smtpgate.protocol.events import AuthAttempt, CloseConnection, DataChunk, DataEnd, MailFrom, RcptTo
    from smtpgate.protocol.mail import Refusal, parse_mail, parse_rcpt
    from smtpgate.proxy import MAX_V1_LENGTH, MAX_V2_LENGTH, ProxyError, header_length, parse_proxy_header
    from smtpgate.sasl import AuthResult, XOAuth2Error
    from smtpgate.session import Envelope, Session

del AuthResult  # imported for instrumentation only

REPLY_LINE = re.compile(rb"(\d{3})([ -])([^\r\n]*)\r\n")
MAX_LINE = 512
CONTROL = re.compile("[\x00-\x1f\x7f]")


class Finding(AssertionError):
    """An oracle violation: libFuzzer saves the input as a crash."""


# ----------------------------------------------------------------------------- commands


def _config(flags: int) -> ProtocolConfig:
    return ProtocolConfig(
        name="mx.test",
        lmtp=bool(flags & 1),
        bare_lf=("normalize", "reject", "allow")[(flags >> 1) % 3],
        size=100 if flags & 8 else 0,
        max_command_length=MAX_LINE,
        max_unrecognized_commands=5 if flags & 16 else 100,
        auth_methods=("PLAIN", "LOGIN", "XOAUTH2") if flags & 32 else (),  # CRAM-MD5's challenge is random
        auth_optional=bool(flags & 64),
        allow_insecure_auth=True,
        max_recipients=3,
        chunking=not flags & 128,
    )


def _drive(core: ServerProtocol, verdicts: bytes, state: dict) -> None:
    for _ in range(100_000):
        if state["closed"]:
            return
        event = core.next_event()
        if event is None:
            return
        if isinstance(event, CloseConnection):
            state["closed"] = True
            return
        if isinstance(event, DataChunk):
            state["body"] += event.data
            continue
        if not event.needs_decision:
            continue
        n = state["decisions"]
        state["decisions"] = n + 1
        bit = verdicts[n % len(verdicts)] if verdicts else 0
        if isinstance(event, DataEnd):
            refused = event.bare_lf and core.config.bare_lf == "reject"
            state["messages"].append(b"<bare LF>" if refused else bytes(state["body"]))
            state["body"] = bytearray()
            if bit & 3 == 1:
                core.reject(SMTPError(554, "no\r\nthanks"))
            elif bit & 3 == 2 and core.config.lmtp:
                count = len(core.session.envelope.rcpt_to)
                core.accept([None if i % 2 else SMTPError(452, "full") for i in range(count)])
            else:
                core.accept("queued\nas X")
            continue
        if isinstance(event, AuthAttempt) and bit & 3 == 3:
            core.reject(XOAuth2Error("bad token") if event.auth.method == "XOAUTH2" else SMTPError(535, "no"))
            continue
        if isinstance(event, (MailFrom, RcptTo)) and bit & 3 == 1:
            core.reject(SMTPError(550 if bit & 4 else 421, "refused"))
            continue
        if isinstance(event, AuthAttempt):
            core.session.user = event.auth.username
        state["body"] = bytearray()
        core.accept()
    raise Finding("the core produced events forever")


def _session(config: ProtocolConfig, pieces: list[bytes], verdicts: bytes) -> tuple[bytes, list[bytes]]:
    core = ServerProtocol(config, Session(id="fuzz"))
    core.start()
    state: dict = {"closed": False, "body": bytearray(), "messages": [], "decisions": 0}
    out = bytearray(core.data_to_send())
    for piece in pieces:
        core.receive_data(piece)
        _drive(core, verdicts, state)
        out += core.data_to_send()
    core.receive_eof()
    _drive(core, verdicts, state)
    out += core.data_to_send()
    if not state["closed"]:
        raise Finding("no CloseConnection after EOF")
    return bytes(out), state["messages"]


def _check_replies(out: bytes) -> None:
    pos = 0
    code = None
    while pos < len(out):
        match = REPLY_LINE.match(out, pos)
        if match is None:
            raise Finding(f"malformed reply line at {out[pos : pos + 60]!r}")
        if code is not None and match.group(1) != code:
            raise Finding(f"continuation changes the code: {out[pos : pos + 60]!r}")
        code = None if match.group(2) == b" " else match.group(1)
        pos = match.end()
    if code is not None:
        raise Finding("output ends inside a multi-line reply")


def target_commands(data: bytes) -> None:
    if len(data) < 3:
        return
    flags, cut_seed, verdict_len = data[0], data[1], data[2] % 8
    verdicts = data[3 : 3 + verdict_len]
    stream = data[3 + verdict_len :]
    config = _config(flags)
    whole, messages = _session(config, [stream], verdicts)
    _check_replies(whole)
    rng = random.Random(cut_seed)
    pieces, pos = [], 0
    while pos < len(stream):
        step = rng.choice((1, 1, 2, 3, 7, 64))
        pieces.append(stream[pos : pos + step])
        pos += step
    split, split_messages = _session(config, pieces, verdicts)
    if (split, split_messages) != (whole, messages):
        raise Finding(f"split feeding changed the session:\n{whole!r}\n{split!r}\n{messages!r}\n{split_messages!r}")


# ----------------------------------------------------------------------------- mail


MAIL_CONFIGS = [
    ProtocolConfig(name="mx.test", size=1000),
    ProtocolConfig(name="mx.test", accept_unknown_params=True, hide_dsn=True, chunking=False),
    ProtocolConfig(name="mx.test", auth_methods=("PLAIN",), max_recipients=1),
]


def target_mail(data: bytes) -> None:
    if not data:
        return
    config = MAIL_CONFIGS[data[0] % len(MAIL_CONFIGS)]
    text = data[1:].decode("utf-8", "replace")
    for keyword in ("FROM", "TO"):
        try:
            path, rest = addresses_module.split_path_argument(text, keyword)
        except addresses_module.SyntaxProblem:
            continue
        for allow in (True, False):
            try:
                mailbox = addresses_module.parse_mailbox(path, allow_null=allow, allow_postmaster=not allow)
            except addresses_module.SyntaxProblem:
                continue
            if CONTROL.search(mailbox) or len(mailbox.encode("utf-8", "surrogatepass")) > 254:
                raise Finding(f"accepted mailbox {mailbox!r}")
        try:
            params = addresses_module.parse_params(rest)
        except addresses_module.SyntaxProblem:
            params = None
        if params is not None:
            for key, value in params.items():
                if key != key.upper() or (isinstance(value, str) and CONTROL.search(value)):
                    raise Finding(f"bad parameter {key!r}={value!r}")
    try:
        request = parse_mail(text, config, secure=bool(data[0] & 1))
        if CONTROL.search(request.address.address):
            raise Finding(f"MAIL accepted {request.address!r}")
    except Refusal as refusal:
        if not 400 <= refusal.code <= 599:
            raise Finding(f"refusal code {refusal.code}") from None
    envelope = Envelope(smtp_utf8=bool(data[0] & 2))
    try:
        address = parse_rcpt(text, config, envelope)
        if not address.address or CONTROL.search(address.address):
            raise Finding(f"RCPT accepted {address!r}")
    except Refusal as refusal:
        if not 400 <= refusal.code <= 599:
            raise Finding(f"refusal code {refusal.code}") from None


# ----------------------------------------------------------------------------- proxy


def target_proxy(data: bytes) -> None:
    # As the listener reads: grow the prefix until the length is known or refused.
    for end in range(6, min(len(data), MAX_V2_LENGTH + 16) + 1):
        try:
            total = header_length(data[:end])
        except ProxyError:
            return
        if total is None:
            continue
        if total < 8 or total > MAX_V2_LENGTH or (not data.startswith(b"\r\n") and total > MAX_V1_LENGTH):
            raise Finding(f"header_length {total}")
        if len(data) < total:
            return
        try:
            info = parse_proxy_header(data[:total])
        except ProxyError:
            return
        for port in (info.source_port, info.destination_port):
            if port is not None and not 0 <= port <= 65535:
                raise Finding(f"port {port}")
        for address in (info.source_address, info.destination_address):
            if address is not None:
                ipaddress.ip_address(address)
        if not info.local and info.source_address is None:
            raise Finding("a proxied connection without a source address")
        return


# ----------------------------------------------------------------------------- data


def _reference(stream: bytes, mode: str) -> tuple[bytes, int] | None:
    s = b"\r\n" + stream
    idx = s.find(b"\r\n.\r\n")
    if idx < 0:
        return None
    raw = s[2 : idx + 2]
    lines = raw.split(b"\r\n")
    body = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    if mode == "normalize":
        body = re.sub(rb"(?<!\r)\n", b"\r\n", body)
    return body, idx + 3


def target_data(data: bytes) -> None:
    if len(data) < 2:
        return
    mode = ("normalize", "reject", "allow")[data[0] % 3]
    rng = random.Random(data[1])
    stream = data[2:]
    decoder = DataDecoder(mode)
    buf = bytearray()
    out = bytearray()
    pos = 0
    used_total = 0
    while not decoder.ended:
        step = rng.choice((1, 2, 3, 5, 64))
        if pos >= len(stream):
            break
        buf += stream[pos : pos + step]
        pos += step
        chunk, used = decoder.decode(buf)
        if used < 0 or used > len(buf):
            raise Finding(f"decoder used {used} of {len(buf)}")
        del buf[:used]
        used_total += used
        out += chunk
    expected = _reference(stream, mode)
    if expected is None:
        if decoder.ended:
            raise Finding("ended without a terminator")
        return
    if not decoder.ended:
        raise Finding("terminator not seen")
    body, consumed = expected
    if bytes(out) != body or used_total != consumed or decoder.byte_length != len(body):
        raise Finding(f"decoded {bytes(out)!r} ({used_total}) != {body!r} ({consumed})")


TARGETS = {"commands": target_commands, "mail": target_mail, "proxy": target_proxy, "data": target_data}


# ----------------------------------------------------------------------------- fallback fuzzer


def _mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif op == 2 and b:
            del b[rng.randrange(len(b))]
        elif op == 3 and corpus:
            other = rng.choice(corpus)
            i = rng.randrange(len(other) + 1)
            b[rng.randrange(len(b) + 1) :] = other[i:]
        elif op == 4:
            token = rng.choice([b"\r\n", b"\n", b".", b"\r\n.\r\n", b"<", b">", b"@", b"=", b" ", b"\x00", b"BDAT 3"])
            b[rng.randrange(len(b) + 1) : 0] = token
        elif op == 5 and b:
            i = rng.randrange(len(b))
            b[i:i] = b[i : i + rng.randint(1, 16)] * rng.randint(1, 8)
    return bytes(b[:65536])


def fallback(target: str, seconds: float, corpus_dir: str) -> int:
    func = TARGETS[target]
    corpus = [open(os.path.join(corpus_dir, name), "rb").read() for name in sorted(os.listdir(corpus_dir))]
    corpus = corpus or [b""]
    rng = random.Random(int(time.time()))
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        data = _mutate(rng, rng.choice(corpus), corpus)
        try:
            func(data)
        except Exception:
            print(f"FINDING in {target}: {data!r}", file=sys.stderr)
            raise
        runs += 1
    print(f"Done {runs} runs in {seconds:.0f} second(s) (mutation fuzzer, no atheris)")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--target", choices=sorted(TARGETS), required=True)
    parser.add_argument("--no-atheris", action="store_true")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--corpus", default=None)
    args, rest = parser.parse_known_args()
    corpus = args.corpus or os.path.join(HERE, "corpus", args.target)
    if HAVE_ATHERIS:
        func = TARGETS[args.target]
        atheris.Setup([sys.argv[0], *rest], func)
        atheris.Fuzz()
    else:
        sys.exit(fallback(args.target, args.seconds, corpus))


if __name__ == "__main__":
    main()
