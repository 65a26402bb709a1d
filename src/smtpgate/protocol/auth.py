"""AUTH (RFC 4954) inside the protocol core: the command, the SASL exchange, the policy.

`AuthExchange` owns the exchange (the mechanism in progress, a pending XOAUTH2 error, the
failure count) and writes its replies; the core moves between phases from what it
reports (``in_exchange``). The mechanisms themselves live in :mod:`smtpgate.sasl`.
"""

from __future__ import annotations

import base64
import binascii

from ..errors import SMTPError
from ..sasl import AuthRequest, Mechanism, SASLProblem, XOAuth2Error, new_mechanism
from ..session import Session
from .config import ProtocolConfig
from .events import AuthAttempt
from .replies import ReplyWriter

__all__ = ["AuthExchange"]


class AuthExchange:
    """The AUTH policy of a session and its SASL exchange."""

    __slots__ = (
        "_config",
        "_session",
        "_writer",
        "_mechanism",
        "_pending_failure",
        "_failures",
        "enabled",
        "exhausted",
    )

    def __init__(self, config: ProtocolConfig, session: Session, writer: ReplyWriter) -> None:
        self._config = config
        self._session = session
        self._writer = writer
        self._mechanism: Mechanism | None = None
        self._pending_failure: SMTPError | None = None  # XOAUTH2: the reply after the JSON challenge
        self._failures = 0
        self.enabled = bool(config.auth_methods) and "AUTH" not in config.disabled_commands
        self.exhausted = False  # one failure too many: the core closes with 421 (nothing was written)

    @property
    def in_exchange(self) -> bool:
        """True while the client owes a response line (after a 334)."""
        return self._mechanism is not None or self._pending_failure is not None

    def required(self) -> bool:
        """Must the client authenticate before a transaction?"""
        return self.enabled and not self._config.auth_optional and self._session.user is None

    def usable(self) -> bool:
        """May AUTH be used on this connection now (and so be advertised)?"""
        secure = self._session.secure
        if self._config.needs_upgrade and not secure:
            return False
        return secure or self._config.allow_insecure_auth

    def start(self, argument: str) -> AuthAttempt | None:
        """``AUTH mechanism [initial-response]`` (HELO was checked): an attempt, or None
        after a challenge or a refusal."""
        config = self._config
        session = self._session
        reply = self._writer.reply
        if session.user is not None:
            reply(503, "Error: already authenticated", "5.5.1")
            return None
        if session.envelope.mail_from is not None:
            reply(503, "Error: AUTH not allowed during a mail transaction", "5.5.1")
            return None
        if config.needs_upgrade and not session.secure:
            reply(530, "Must issue a STARTTLS command first", "5.7.0")
            return None
        if not session.secure and not config.allow_insecure_auth:
            reply(538, "Encryption required for requested authentication mechanism", "5.7.11")
            return None
        args = argument.split()
        if not 1 <= len(args) <= 2:
            reply(501, "Error: syntax: AUTH mechanism [initial-response]", "5.5.4")
            return None
        name = args[0].upper()
        if name not in config.auth_methods:
            reply(504, "Error: unrecognized authentication mechanism", "5.5.4")
            return None
        mechanism = new_mechanism(name, config.name)
        try:
            initial: bytes | None = None
            if len(args) == 2:
                if not mechanism.allows_initial_response:
                    raise SASLProblem(f"{name} does not take an initial response")
                initial = b"" if args[1] == "=" else base64.b64decode(args[1], validate=True)
            step = mechanism.start(initial)
        except (binascii.Error, ValueError) as problem:
            self._syntax_error(problem)
            return None
        return self._result(mechanism, step)

    def line(self, raw: bytes) -> AuthAttempt | None:
        """One client line inside the exchange."""
        line = raw.rstrip(b"\r\n").strip()
        mechanism, pending_failure = self._mechanism, self._pending_failure
        self.cancel()
        if pending_failure is not None:
            self._failure_reply(pending_failure)
            return None
        if line == b"*":
            self._writer.reply(501, "Authentication cancelled", "5.7.0")
            return None
        assert mechanism is not None
        try:
            step = mechanism.step(base64.b64decode(line, validate=True))
        except (binascii.Error, ValueError) as problem:
            self._syntax_error(problem)
            return None
        return self._result(mechanism, step)

    def cancel(self) -> None:
        """End the exchange (an over-long response line, or a line was read)."""
        self._mechanism = None
        self._pending_failure = None

    def refused(self, event: AuthAttempt, error: SMTPError) -> None:
        """The driver refused the credentials: answer (or, for XOAUTH2, challenge)."""
        if isinstance(error, XOAuth2Error) and event.auth.method == "XOAUTH2":
            # RFC 7628: send the error details; the client answers with an empty line.
            self._writer.lines(334, [base64.b64encode(error.challenge.encode()).decode()])
            self._pending_failure = error
            return
        self._failure_reply(error)

    def _failure_reply(self, error: SMTPError) -> None:
        self._failures += 1
        if self._failures >= self._config.max_auth_failures:
            self.exhausted = True
        else:
            self._writer.reply(error.code, error.message, error.enhanced or ("5.7.8" if error.code == 535 else None))

    def _syntax_error(self, problem: Exception) -> None:
        reason = problem if isinstance(problem, SASLProblem) else "invalid base64 data"
        self._writer.reply(501, f"Error: {reason}", "5.5.2")

    def _result(self, mechanism: Mechanism, step: object) -> AuthAttempt | None:
        if isinstance(step, bytes):
            self._mechanism = mechanism
            self._writer.lines(334, [base64.b64encode(step).decode("ascii")])
            return None
        assert isinstance(step, AuthRequest)
        return AuthAttempt(step)
