"""MAIL FROM and RCPT TO arguments: the path, the ESMTP parameters and their checks.

Pure functions: they return what the transaction needs or raise `Refusal` with
the reply to send.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from ..session import Address, Envelope
from .addresses import PLAIN_FROM, PLAIN_TO, SyntaxProblem, parse_mailbox, parse_params, plain_path, split_path_argument
from .replies import SIZE_EXCEEDED_CODE, size_exceeded_text

if TYPE_CHECKING:
    from .config import ProtocolConfig

__all__ = ["Refusal", "MailRequest", "parse_mail", "parse_rcpt"]

_SIZE_VALUE: Final = re.compile(r"\d{1,20}")
_NOTIFY_VALUES: Final = ("NEVER", "SUCCESS", "FAILURE", "DELAY")
_ORCPT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*;\S.*", re.S)


class Refusal(Exception):
    """A command refused by the core itself: the reply code, text and enhanced code."""

    def __init__(self, code: int, text: str, enhanced: str | None) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text
        self.enhanced = enhanced


class MailRequest:
    """A MAIL FROM that passed every check. (A plain class: a dataclass's ``__init__``
    would run interpreted, once per message.)"""

    __slots__ = ("address", "body_type", "smtp_utf8", "require_tls", "dsn")

    def __init__(self, address: Address, dsn: dict[str, str | None] | None = None) -> None:
        self.address = address
        self.body_type = "7bit"
        self.smtp_utf8 = False
        self.require_tls = False
        self.dsn = dsn


def parse_mail(argument: str, config: ProtocolConfig, *, secure: bool = False) -> MailRequest:
    """Check ``FROM:<path> [params]`` against the server's configuration."""
    mailbox = plain_path(argument, PLAIN_FROM)
    if mailbox is None:
        return _parse_mail_in_full(argument, config, secure)
    # The usual "FROM:<a@b.example>": a plain mailbox and no parameters, nothing to check.
    return MailRequest(Address(mailbox, {}), dsn=None if config.hide_dsn else {"ret": None, "envid": None})


def _parse_mail_in_full(argument: str, config: ProtocolConfig, secure: bool) -> MailRequest:
    try:
        path, rest = split_path_argument(argument, "FROM")
        mailbox = parse_mailbox(path, allow_null=True, allow_postmaster=False)
        params = parse_params(rest)
    except SyntaxProblem as problem:
        raise Refusal(501, f"Error: bad sender address syntax ({problem})", "5.1.7") from None
    request = MailRequest(Address(mailbox, params))
    dsn: dict[str, str | None] = {}
    for key, value in params.items():
        if key == "SIZE":
            if value is True or not _SIZE_VALUE.fullmatch(str(value)):
                raise Refusal(501, "Error: bad message size syntax", "5.5.4")
            if config.size and not config.hide_size and int(str(value)) > config.size:
                raise Refusal(552, size_exceeded_text(config.size), SIZE_EXCEEDED_CODE)
        elif key == "BODY":
            body = str(value).upper() if value is not True else ""
            allowed = ("7BIT", "8BITMIME", "BINARYMIME") if config.chunking else ("7BIT", "8BITMIME")
            if body not in allowed:
                raise Refusal(501, f"Error: BODY parameter must be {' or '.join(allowed)}", "5.5.4")
            request.body_type = body.lower()
        elif key == "SMTPUTF8":
            if value is not True:
                raise Refusal(501, "Error: SMTPUTF8 parameter does not take a value", "5.5.4")
            request.smtp_utf8 = True
        elif key == "REQUIRETLS" and not config.hide_requiretls:
            if value is not True:
                raise Refusal(501, "Error: REQUIRETLS parameter does not take a value", "5.5.4")
            if not secure:
                raise Refusal(530, "Error: REQUIRETLS not permitted on non-TLS connections", "5.7.10")
            request.require_tls = True
        elif key == "RET" and not config.hide_dsn:
            ret = str(value).upper() if value is not True else ""
            if ret not in ("FULL", "HDRS"):
                raise Refusal(501, "Error: RET parameter must be FULL or HDRS", "5.5.4")
            dsn["ret"] = ret
        elif key == "ENVID" and not config.hide_dsn:
            if value is True or not value or len(str(value)) > 100 or not str(value).isascii():
                raise Refusal(501, "Error: ENVID parameter needs a value of at most 100 characters", "5.5.4")
            dsn["envid"] = str(value)
        elif key == "AUTH" and config.auth_methods:
            if value is True:
                raise Refusal(501, "Error: AUTH parameter requires a value", "5.5.4")
        elif not config.accept_unknown_params:
            raise Refusal(555, f"Error: unsupported parameter {key}", "5.5.4")
    if not request.smtp_utf8 and not mailbox.isascii():
        raise Refusal(553, "Error: non-ASCII address needs the SMTPUTF8 parameter", "5.6.7")
    if not config.hide_dsn:
        request.dsn = {"ret": dsn.get("ret"), "envid": dsn.get("envid")}
    return request


def parse_rcpt(argument: str, config: ProtocolConfig, envelope: Envelope) -> Address:
    """Check ``TO:<path> [params]`` against the configuration and the transaction so far."""
    mailbox = plain_path(argument, PLAIN_TO)
    if mailbox is None:
        return _parse_rcpt_in_full(argument, config, envelope)
    # The usual "TO:<a@b.example>": a plain mailbox and no parameters.
    _check_room(mailbox, config, envelope)
    address = Address(mailbox, {})
    if not config.hide_dsn:
        address.dsn = {"notify": None, "orcpt": None}
    return address


def _check_room(mailbox: str, config: ProtocolConfig, envelope: Envelope) -> None:
    """``max_recipients``: a recipient already in the envelope still counts as one."""
    limit = config.max_recipients
    if limit and len(envelope.rcpt_to) >= limit:
        key = mailbox.lower()
        if not any(r.address.lower() == key for r in envelope.rcpt_to):
            raise Refusal(452, "Error: too many recipients", "4.5.3")


def _parse_rcpt_in_full(argument: str, config: ProtocolConfig, envelope: Envelope) -> Address:
    try:
        path, rest = split_path_argument(argument, "TO")
        mailbox = parse_mailbox(path, allow_null=False, allow_postmaster=True)
        params = parse_params(rest)
    except SyntaxProblem as problem:
        raise Refusal(501, f"Error: bad recipient address syntax ({problem})", "5.1.3") from None
    notify: list[str] | None = None
    orcpt: str | None = None
    for key, value in params.items():
        if key == "NOTIFY" and not config.hide_dsn:
            items = [item.strip().upper() for item in str(value).split(",")] if value is not True else [""]
            if not items or any(item not in _NOTIFY_VALUES for item in items) or len(set(items)) != len(items):
                raise Refusal(501, "Error: NOTIFY parameter must be NEVER, SUCCESS, FAILURE, or DELAY", "5.5.4")
            if "NEVER" in items and len(items) > 1:
                raise Refusal(501, "Error: NOTIFY=NEVER cannot be combined with other values", "5.5.4")
            notify = items
        elif key == "ORCPT" and not config.hide_dsn:
            if value is True or not _ORCPT.fullmatch(str(value)):
                raise Refusal(501, "Error: bad ORCPT parameter syntax, expected type;address", "5.5.4")
            orcpt = str(value)
        elif not config.accept_unknown_params:
            raise Refusal(555, f"Error: unsupported parameter {key}", "5.5.4")
    if not envelope.smtp_utf8 and not mailbox.isascii():
        raise Refusal(553, "Error: non-ASCII address needs the SMTPUTF8 parameter on MAIL", "5.6.7")
    _check_room(mailbox, config, envelope)
    address = Address(mailbox, params)
    if not config.hide_dsn:
        address.dsn = {"notify": notify, "orcpt": orcpt}
    return address
