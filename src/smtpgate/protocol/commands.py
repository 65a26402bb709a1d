"""The commands of the protocol core: one function per verb, given the session's
`ServerProtocol`. Each checks its arguments and the session, answers through
``core.replies``, and returns the event that needs the driver (or None)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .body import parse_bdat
from .ehlo import extensions, helo_text
from .events import DataStart, Event, MailFrom, RcptTo, StartTLS
from .mail import Refusal, parse_mail, parse_rcpt
from .state import Trigger

if TYPE_CHECKING:
    from .core import ServerProtocol

__all__ = ["COMMANDS", "transaction_refusal"]


def _helo_first(core: ServerProtocol) -> Refusal:
    return Refusal(503, f"Error: send {'LHLO' if core.config.lmtp else 'HELO/EHLO'} first", "5.5.1")


def transaction_refusal(core: ServerProtocol) -> Refusal | None:
    """HELO first, then STARTTLS if required, then AUTH if required (MAIL/RCPT/DATA/BDAT)."""
    if core.session.host_name_appears_as is None:
        return _helo_first(core)
    if core.config.needs_upgrade and not core.session.secure:
        return Refusal(530, "Must issue a STARTTLS command first", "5.7.0")
    if core.auth.required():
        return Refusal(530, core.config.auth_required_message, "5.7.0")
    return None


def _body_refusal(core: ServerProtocol) -> Refusal | None:
    """What DATA and BDAT need besides the transaction rights: a sender and a recipient."""
    refusal = transaction_refusal(core)
    if refusal is not None:
        return refusal
    envelope = core.session.envelope
    if envelope.mail_from is None:
        return Refusal(503, "Error: need MAIL command", "5.5.1")
    if not envelope.rcpt_to:
        return Refusal(503, "Error: need RCPT command", "5.5.1")
    return None


def _refuse(core: ServerProtocol, refusal: Refusal | None) -> bool:
    """Answer ``refusal`` if there is one; True if there was."""
    if refusal is None:
        return False
    core.replies.reply(refusal.code, refusal.text, refusal.enhanced)
    return True


def helo(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    args = argument.split()
    session = core.session
    reply = core.replies.reply
    if core.config.lmtp and verb != "LHLO":
        reply(500, f"Error: {verb} not allowed in LMTP server", "5.5.1")
        return None
    if not core.config.lmtp and verb == "LHLO":
        core.bad_command("Error: command not recognized", "5.5.2")
        return None
    if len(args) != 1:
        reply(501, f"Error: syntax: {verb} hostname", "5.5.4")
        return None
    hostname = args[0]
    if len(hostname) > 255:
        reply(501, "Error: bad hostname syntax", "5.5.4")
        return None
    aborted = core.body.abort_bdat()
    core.body.reset()
    session.host_name_appears_as = hostname.lower()
    session.opening_command = verb
    core.update_transmission_type(verb)
    first = helo_text(core.config, session)
    if verb == "HELO":
        core.replies.lines(250, [first])
    else:
        auth = core.auth
        offer_auth = auth.enabled and session.user is None and auth.usable()
        ext = extensions(core.config, session, auth=offer_auth, forwarding=core.forwarding.extensions())
        core.replies.lines(250, [first, *ext])
    return aborted


def mail(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    if _refuse(core, transaction_refusal(core)):
        return None
    envelope = core.session.envelope
    if envelope.mail_from is not None:
        core.replies.reply(503, "Error: nested MAIL command", "5.5.1")
        return None
    try:
        request = parse_mail(argument, core.config, secure=core.session.secure)
    except Refusal as refusal:
        _refuse(core, refusal)
        return None
    envelope.body_type = request.body_type
    envelope.smtp_utf8 = request.smtp_utf8
    envelope.require_tls = request.require_tls
    envelope.dsn = request.dsn
    return MailFrom(request.address)


def rcpt(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    if _refuse(core, transaction_refusal(core)):
        return None
    envelope = core.session.envelope
    if envelope.mail_from is None:
        core.replies.reply(503, "Error: need MAIL command", "5.5.1")
        return None
    if core.body.bdat_active:
        core.replies.reply(503, "Error: RCPT not allowed after BDAT", "5.5.1")
        return None
    try:
        address = parse_rcpt(argument, core.config, envelope)
    except Refusal as refusal:
        _refuse(core, refusal)
        return None
    return RcptTo(address)


def data(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    if argument:
        core.replies.reply(501, "Error: syntax: DATA", "5.5.4")
        return None
    refusal = _body_refusal(core)
    if refusal is None and core.body.bdat_active:
        refusal = Refusal(503, "Error: DATA not allowed after BDAT", "5.5.1")
    if refusal is None and core.session.envelope.body_type == "binarymime":
        refusal = Refusal(503, "Error: BODY=BINARYMIME requires BDAT", "5.5.1")
    if _refuse(core, refusal):
        return None
    return DataStart()


def bdat(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    chunk = parse_bdat(argument)
    if chunk is None:
        # The chunk's length is unknown, so its bytes cannot be told from commands.
        core.close_with(421, f"{core.config.name} Error: bad BDAT syntax, closing", "4.5.4", "bad BDAT")
        return None
    size, last = chunk
    refusal = _body_refusal(core)
    if refusal is not None:
        core.body.skip_chunk(size, refusal)
    elif core.body.open_bdat(size, last):
        return DataStart()  # the first chunk: its bytes follow once DataStart is decided
    core.fire(Trigger.CHUNK_STARTED)
    return None


def rset(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    if argument:
        core.replies.reply(501, "Error: syntax: RSET", "5.5.4")
        return None
    aborted = core.body.abort_bdat()
    core.body.reset()
    core.replies.reply(250, "Flushed", "2.0.0")
    return aborted


def noop(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    core.replies.reply(250, "OK", "2.0.0")
    return None


def quit(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    core.close_with(221, "Bye", "2.0.0", "client sent QUIT")
    return None


def vrfy(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    if not argument:
        core.replies.reply(501, "Error: syntax: VRFY address", "5.5.4")
        return None
    core.replies.reply(252, "Cannot VRFY user, but will accept message and attempt delivery", "2.1.5")
    return None


def help(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    core.replies.reply(214, "See https://www.rfc-editor.org/rfc/rfc5321 for details", "2.0.0")
    return None


def expn(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    core.replies.reply(502, "Error: EXPN not implemented", "5.5.1")
    return None


def starttls(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    if not core.config.starttls:
        core.bad_command("Error: command not recognized", "5.5.2")
        return None
    if argument:
        core.replies.reply(501, "Error: syntax: STARTTLS", "5.5.4")
        return None
    if core.session.secure:
        core.replies.reply(503, "Error: TLS already active", "5.5.1")
        return None
    return StartTLS()


def auth(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    if not core.auth.enabled:
        core.bad_command("Error: command not recognized", "5.5.2")
        return None
    if core.session.host_name_appears_as is None:
        _refuse(core, _helo_first(core))
        return None
    attempt = core.auth.start(argument)
    if attempt is None and core.auth.in_exchange:
        core.fire(Trigger.CHALLENGE)
    return attempt


def xclient(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    return core.forwarding.xclient(argument)


def xforward(core: ServerProtocol, verb: str, argument: str) -> Event | None:
    core.forwarding.xforward(argument)
    return None


COMMANDS: dict[str, Callable[[ServerProtocol, str, str], Event | None]] = {
    "HELO": helo,
    "EHLO": helo,
    "LHLO": helo,
    "MAIL": mail,
    "RCPT": rcpt,
    "DATA": data,
    "BDAT": bdat,
    "RSET": rset,
    "NOOP": noop,
    "QUIT": quit,
    "VRFY": vrfy,
    "HELP": help,
    "EXPN": expn,
    "STARTTLS": starttls,
    "AUTH": auth,
    "XCLIENT": xclient,
    "XFORWARD": xforward,
}
