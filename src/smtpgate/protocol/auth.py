"""AUTH (RFC 4954) inside the protocol core: the command, the SASL exchange, the policy.

Mixed into `smtpgate.protocol.core.ServerProtocol`; kept apart so the state
machine stays readable. The mechanisms themselves live in :mod:`smtpgate.sasl`.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from ..errors import SMTPError
from ..sasl import AuthRequest, Mechanism, SASLProblem, XOAuth2Error, new_mechanism
from ..session import Session
from .events import AuthAttempt, Event
from .replies import format_reply

if TYPE_CHECKING:
    from .core import ProtocolConfig

__all__ = ["AuthCommands", "AUTH_PHASE", "COMMAND_PHASE"]

# Shared with core.py: the phases this module moves between.
COMMAND_PHASE = 1
AUTH_PHASE = 5


class AuthCommands:
    """AUTH handling; expects the attributes and helpers of ServerProtocol."""

    config: ProtocolConfig
    session: Session
    _phase: int
    _out: list[bytes]
    _sasl: Mechanism | None
    _sasl_failure: SMTPError | None
    _auth_failures: int

    if TYPE_CHECKING:

        def _reply(self, code: int, text: str, enhanced: str | None = None) -> None: ...

        def _close_with(self, code: int, text: str, enhanced: str | None, reason: str) -> None: ...

        def _bad_command(self, text: str, enhanced: str) -> None: ...

        def _require_helo(self) -> bool: ...

    def _cmd_auth(self, verb: str, argument: str) -> Event | None:
        config = self.config
        session = self.session
        if not self._auth_enabled:
            self._bad_command("Error: command not recognized", "5.5.2")
            return None
        if not self._require_helo():
            return None
        if session.user is not None:
            self._reply(503, "Error: already authenticated", "5.5.1")
            return None
        if session.envelope.mail_from is not None:
            self._reply(503, "Error: AUTH not allowed during a mail transaction", "5.5.1")
            return None
        if config.needs_upgrade and not session.secure:
            self._reply(530, "Must issue a STARTTLS command first", "5.7.0")
            return None
        if not session.secure and not config.allow_insecure_auth:
            self._reply(538, "Encryption required for requested authentication mechanism", "5.7.11")
            return None
        args = argument.split()
        if not 1 <= len(args) <= 2:
            self._reply(501, "Error: syntax: AUTH mechanism [initial-response]", "5.5.4")
            return None
        name = args[0].upper()
        if name not in config.auth_methods:
            self._reply(504, "Error: unrecognized authentication mechanism", "5.5.4")
            return None
        mechanism = new_mechanism(name, config.name)
        initial: bytes | None = None
        try:
            if len(args) == 2:
                if not mechanism.allows_initial_response:
                    raise SASLProblem(f"{name} does not take an initial response")
                initial = b"" if args[1] == "=" else base64.b64decode(args[1], validate=True)
            step = mechanism.start(initial)
        except (binascii.Error, ValueError) as problem:
            reason = problem if isinstance(problem, SASLProblem) else "invalid base64 data"
            self._reply(501, f"Error: {reason}", "5.5.2")
            return None
        return self._sasl_result(mechanism, step)

    def _auth_failed(self, event: AuthAttempt, error: SMTPError) -> None:
        self._phase = COMMAND_PHASE
        if isinstance(error, XOAuth2Error) and event.auth.method == "XOAUTH2":
            # RFC 7628: send the error details; the client answers with an empty line.
            self._out.append(format_reply(334, [base64.b64encode(error.challenge.encode()).decode()], None))
            self._sasl_failure = error
            self._phase = AUTH_PHASE
            return
        self._auth_failure_reply(error)

    def _auth_failure_reply(self, error: SMTPError) -> None:
        self._auth_failures += 1
        if self._auth_failures >= self.config.max_auth_failures:
            self._close_with(
                421, f"{self.config.name} Error: too many authentication failures", "4.7.0", "AUTH failures"
            )
            return
        self._reply(error.code, error.message, error.enhanced or ("5.7.8" if error.code == 535 else None))

    def _sasl_line(self, raw: bytes) -> Event | None:
        """One client line inside an AUTH exchange."""
        line = raw.rstrip(b"\r\n").strip()
        mechanism = self._sasl
        pending_failure = self._sasl_failure
        self._sasl = None
        self._sasl_failure = None
        self._phase = COMMAND_PHASE
        if pending_failure is not None:
            self._auth_failure_reply(pending_failure)
            return None
        if line == b"*":
            self._reply(501, "Authentication cancelled", "5.7.0")
            return None
        assert mechanism is not None
        try:
            data = base64.b64decode(line, validate=True)
            step = mechanism.step(data)
        except (binascii.Error, ValueError) as problem:
            reason = problem if isinstance(problem, SASLProblem) else "invalid base64 data"
            self._reply(501, f"Error: {reason}", "5.5.2")
            return None
        return self._sasl_result(mechanism, step)

    def _sasl_result(self, mechanism: Mechanism, step: object) -> Event | None:
        if isinstance(step, bytes):
            self._sasl = mechanism
            self._phase = AUTH_PHASE
            self._out.append(format_reply(334, [base64.b64encode(step).decode("ascii")], None))
            return None
        assert isinstance(step, AuthRequest)
        return AuthAttempt(step)

    @property
    def _auth_enabled(self) -> bool:
        return bool(self.config.auth_methods) and "AUTH" not in self.config.disabled_commands

    def _auth_required(self) -> bool:
        return self._auth_enabled and not self.config.auth_optional and self.session.user is None

    def _auth_usable(self) -> bool:
        """May AUTH be used on this connection now (and so be advertised)?"""
        secure = self.session.secure
        if self.config.needs_upgrade and not secure:
            return False
        return secure or self.config.allow_insecure_auth
