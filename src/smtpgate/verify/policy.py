"""`AuthGate`: the checks plugged into an `SMTPServer`'s handlers, with the policies that
may refuse (SPF at RCPT, DMARC at the end of DATA, DNS blocklists at connect or RCPT).

By default nothing is refused: every message gets its ``Authentication-Results`` header.
With ``Policy(enforce=True)``:

* SPF ``fail`` for MAIL FROM refuses each RCPT with ``550 5.7.23``;
* a DMARC ``fail`` whose policy says reject (the published ``p=``/``sp=`` after ``pct=``,
  or always/never when the user overrides it) refuses the message with ``550 5.7.1``;
* a check that could have refused but met a DNS failure answers ``451 4.7.x`` instead, so a
  message that would have been refused is never accepted for want of an answer.

A DNS blocklist score at or over its threshold refuses with ``554 5.7.1`` and the list's
text, whether or not ``enforce`` is set (asking the lists is the user's choice).

A client that authenticated (``session.user`` set) is submitting its own mail: nothing is
refused at RCPT or at the end of DATA, and the header says ``auth=pass smtp.auth=USER``.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import SMTPError
from ..session import Address, Session
from ..stream import DataStream
from .dnsbl import DNSBL, DNSBLResult
from .results import AuthResults, remove_own_results
from .spf import SPFCheck
from .verifier import Verifier

__all__ = ["AuthGate", "Policy"]

logger = logging.getLogger("smtpgate.verify")

DMARC_MODES = ("published", "reject", "none")


@dataclass(frozen=True)
class Policy:
    """What the checks may refuse.

    :param enforce: apply the policies below; False (default) only adds the header.
    :param spf_reject: with ``enforce``, refuse RCPT when SPF for MAIL FROM is ``fail``.
    :param dmarc: with ``enforce``, ``"published"`` honours the domain's policy (default),
        ``"reject"`` refuses every DMARC ``fail``, ``"none"`` never refuses.
    :param defer_on_temperror: with ``enforce``, answer ``451`` when a check that could
        refuse met a temporary DNS error (default True).
    :param dnsbl_at: ``"connect"`` (default) or ``"rcpt"``: where a blocklisted client is
        refused.
    """

    enforce: bool = False
    spf_reject: bool = True
    dmarc: str = "published"
    defer_on_temperror: bool = True
    dnsbl_at: str = "connect"

    def __post_init__(self) -> None:
        if self.dmarc not in DMARC_MODES:
            raise ValueError(f"dmarc must be one of {', '.join(DMARC_MODES)}, got {self.dmarc!r}")
        if self.dnsbl_at not in ("connect", "rcpt"):
            raise ValueError(f"dnsbl_at must be 'connect' or 'rcpt', got {self.dnsbl_at!r}")


def replay_stream(message: bytes, original: DataStream | None = None, *, prefix: bytes = b"") -> DataStream:
    """A finished `DataStream` holding ``prefix + message`` (for the next handler)."""
    stream = DataStream(0, unbounded=True)
    if prefix or message:
        stream.feed(prefix + message)
    stream.finish()
    if original is not None:
        stream.byte_length = original.byte_length + len(prefix)
        stream.size_exceeded = original.size_exceeded
    return stream


async def _call(handler: Callable[..., Any], *args: Any) -> Any:
    result = handler(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class AuthGate:
    """SPF, DKIM, DMARC and ARC (and DNS blocklists) for an `SMTPServer`.

    :param verifier: the `Verifier` (its resolver is shared with the blocklists).
    :param authserv_id: the name in the ``Authentication-Results`` header (the server's).
    :param policy: what may be refused (`Policy`; default: nothing).
    :param dnsbl: optional `DNSBL`.

    Use ``SMTPServer(**gate.handlers(on_data=store, ...))``: the gate's ``on_connect``,
    ``on_rcpt_to`` and ``on_data`` run first, then yours; your ``on_data`` receives the
    message with the ``Authentication-Results`` field on top, and ``session.auth_results``
    holds the `AuthResults`.
    """

    def __init__(
        self,
        verifier: Verifier,
        *,
        authserv_id: str,
        policy: Policy | None = None,
        dnsbl: DNSBL | None = None,
    ) -> None:
        self.verifier = verifier
        self.authserv_id = authserv_id
        self.policy = policy or Policy()
        self.dnsbl = dnsbl
        # per session: the last answers and what they were for (XCLIENT may change the client)
        self._spf: weakref.WeakKeyDictionary[Session, tuple[tuple[Any, ...], SPFCheck]] = weakref.WeakKeyDictionary()
        self._listed: weakref.WeakKeyDictionary[Session, tuple[str, DNSBLResult]] = weakref.WeakKeyDictionary()

    # ----------------------------------------------------------------- the checks

    async def check_client(self, session: Session) -> None:
        """Refuse a client whose address the DNS blocklists list (``554 5.7.1``)."""
        if self.dnsbl is None:
            return
        cached = self._listed.get(session)
        if cached is not None and cached[0] == session.remote_address:
            result = cached[1]
        else:
            result = await self.dnsbl.check(session.remote_address)
            self._listed[session] = (session.remote_address, result)
        if result.blocked:
            raise SMTPError(554, result.reply_text(session.remote_address), enhanced="5.7.1")

    async def spf_for(self, session: Session) -> SPFCheck:
        """SPF for the session's current transaction (checked once per transaction)."""
        mail_from = session.envelope.mail_from.address if session.envelope.mail_from else ""
        helo = session.host_name_appears_as or ""
        key = (session.transaction, mail_from, session.remote_address, helo)
        cached = self._spf.get(session)
        if cached is not None and cached[0] == key:
            return cached[1]
        check = await self.verifier.check_spf(session.remote_address, mail_from, helo)
        self._spf[session] = (key, check)
        return check

    async def check_recipient(self, session: Session) -> None:
        """The RCPT-time policies: blocklists (if asked there) and SPF ``fail``. An
        authenticated client (``session.user`` set) is exempt: it is submitting its own mail."""
        if session.user is not None:
            return
        if self.policy.dnsbl_at == "rcpt":
            await self.check_client(session)
        policy = self.policy
        if not (policy.enforce and policy.spf_reject):
            return
        spf = (await self.spf_for(session)).mailfrom
        if spf.result == "fail":
            text = f"SPF check failed: {spf.domain} does not allow [{session.remote_address}] to send"
            if spf.explanation:
                text = f"SPF check failed: {_printable(spf.explanation)}"
            raise SMTPError(550, text, enhanced="5.7.23")
        if spf.result == "temperror" and policy.defer_on_temperror:
            raise SMTPError(451, "SPF check could not be completed, try again later", enhanced="4.7.24")

    async def check_message(self, message: bytes, session: Session) -> AuthResults:
        """Every check for the message; raises `SMTPError` when the policy refuses it."""
        mail_from = session.envelope.mail_from.address if session.envelope.mail_from else ""
        spf = None
        if self.verifier.options.spf or self.verifier.options.dmarc:
            spf = await self.spf_for(session)
        results = await self.verifier.check_message(
            message,
            ip=session.remote_address,
            mail_from=mail_from,
            helo=session.host_name_appears_as or "",
            spf=spf,
        )
        if session.user is not None:  # submission: say who logged in, refuse nothing
            results = replace(results, extra=(*results.extra, _auth_entry(session.user)))
        session.auth_results = results  # type: ignore[attr-defined]
        if session.user is None:
            self._apply_dmarc(results)
        return results

    def _apply_dmarc(self, results: AuthResults) -> None:
        policy = self.policy
        dmarc = results.dmarc
        if not policy.enforce or policy.dmarc == "none" or dmarc is None:
            return
        if dmarc.result == "temperror" and policy.defer_on_temperror:
            raise SMTPError(451, "DMARC policy could not be checked, try again later", enhanced="4.7.5")
        if dmarc.result != "fail":
            return
        refuse = policy.dmarc == "reject" or dmarc.disposition == "reject"
        if not refuse:
            return
        if results.temporary_failure and policy.defer_on_temperror:
            raise SMTPError(451, "Message authentication could not be completed, try again later", enhanced="4.7.5")
        text = f"Message refused: it fails the DMARC policy of {dmarc.from_domain}"
        raise SMTPError(550, text, enhanced="5.7.1")

    async def screen(self, stream: DataStream, session: Session) -> tuple[DataStream, bytes]:
        """Read the whole message, check it (raising `SMTPError` on refusal) and return a
        stream of the message and the ``Authentication-Results`` field (CRLF-ended) to put
        on top. Fields that claim this server's authserv-id are removed from the message
        (forged upstream)."""
        message = await stream.read()
        if stream.size_exceeded:  # refused for its size anyway: no checks
            return replay_stream(message, stream), b""
        results = await self.check_message(message, session)
        header = results.header(self.authserv_id).encode("ascii", "replace")
        cleaned = remove_own_results(message, self.authserv_id)
        replay = replay_stream(cleaned, stream)
        replay.byte_length = stream.byte_length - (len(message) - len(cleaned))
        return replay, header

    # ----------------------------------------------------------------- handlers

    def session_handlers(self, **inner: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
        """``on_connect`` and ``on_rcpt_to`` running the gate's checks (where the policy
        needs them) before the given handlers; ``on_data`` is the caller's business
        (see `screen`)."""
        out: dict[str, Callable[..., Any]] = {}
        gate = self
        user_connect = inner.get("on_connect")
        user_rcpt = inner.get("on_rcpt_to")

        if self.dnsbl is not None and self.policy.dnsbl_at == "connect":

            async def on_connect(session: Session) -> Any:
                await gate.check_client(session)
                return await _call(user_connect, session) if user_connect is not None else None

            out["on_connect"] = on_connect

        if self.policy.enforce or (self.dnsbl is not None and self.policy.dnsbl_at == "rcpt"):

            async def on_rcpt_to(address: Address, session: Session) -> Any:
                await gate.check_recipient(session)
                return await _call(user_rcpt, address, session) if user_rcpt is not None else None

            out["on_rcpt_to"] = on_rcpt_to
        return out

    def handlers(self, **inner: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
        """SMTPServer handler options: the gate's checks, then the given handlers."""
        out: dict[str, Callable[..., Any]] = dict(inner)
        out.update(self.session_handlers(**inner))
        gate = self
        user_data = inner.get("on_data")

        async def on_data(stream: DataStream, session: Session) -> Any:
            replay, header = await gate.screen(stream, session)
            if user_data is None:
                return None
            return await _call(user_data, replay_stream(replay.getvalue(), replay, prefix=header), session)

        out["on_data"] = on_data
        return out


def _auth_entry(user: Any) -> str:
    """``auth=pass smtp.auth=USER`` (RFC 8601 section 2.7.4) for an authenticated client."""
    name = _printable(str(user)).replace('"', "'").replace("\\", "/")
    plain = name and all(ch.isalnum() or ch in "!#$%&'*+-.^_`{|}~@" for ch in name)
    return f"auth=pass smtp.auth={name if plain else chr(34) + name + chr(34)}"


def _printable(text: str) -> str:
    return "".join(ch if 0x20 <= ord(ch) < 0x7F else "?" for ch in text)[:300]
