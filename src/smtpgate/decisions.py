"""The user's handlers deciding the core's events, for one session.

Every handler result goes through `Decisions.outcome` (which settles it with
`smtpgate.outcome.outcome_of` and logs failures); the methods here turn outcomes into the
core's ``accept()``/``reject()`` for MAIL, RCPT, AUTH, XCLIENT and the end of a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

from .context import ConnectionContext
from .errors import SMTPError
from .lifecycle import Waiting
from .ondata import SUSPENDED, OnDataCall
from .outcome import (
    AUTH_FAILED,
    HANDLER_TIMEOUT,
    INTERNAL_ERROR,
    Outcome,
    outcome_of,
    outcome_of_failure,
    outcome_of_value,
)
from .protocol.core import ServerProtocol
from .protocol.events import AuthAttempt, DataEnd
from .sasl import AuthResult
from .session import Session
from .stream import DataStream, DataStreamError

__all__ = ["Decisions"]

_ON_DATA: Final = Waiting.ON_DATA


def _wait_on_nothing(waiting: Waiting) -> None:
    """`Decisions`' ``wait_on`` once the session is over."""


def _always_ended() -> bool:
    """`Decisions`' ``ended`` once the session is over."""
    return True


class Decisions:
    """Runs the handlers of one session and answers the core with what they decided.

    ``wait_on`` tells the connection what the session waits on (its idle timer pauses
    while a handler runs); ``ended`` says whether the connection is gone.
    """

    def __init__(
        self,
        ctx: ConnectionContext,
        session: Session,
        core: ServerProtocol,
        log: logging.LoggerAdapter[logging.Logger] | Any,
        wait_on: Callable[[Waiting], None],
        ended: Callable[[], bool],
    ) -> None:
        self.ctx = ctx
        self.session = session
        self.core = core
        self.log = log
        self._wait_on = wait_on
        self._ended = ended

    def let_go(self) -> None:
        """The session is over: drop the connection's callbacks (they refer back to it)."""
        self._wait_on = _wait_on_nothing
        self._ended = _always_ended

    async def outcome(
        self,
        handler: Callable[..., Any],
        call: Callable[[], Any],
        *,
        label: str | None = None,
        stream: DataStream | None = None,
        waiting: Waiting = Waiting.HANDLER,
    ) -> Outcome:
        """The one path for handler results: run, settle (`outcome_of`), log failures."""
        outcome = await outcome_of(
            call, timeout=self.ctx.handler_timeout, wait_on=self._wait_on, waiting=waiting, stream=stream
        )
        if outcome.error is not None and (outcome.timed_out or outcome.failure is not None):
            self._report(handler, outcome, label)
        return outcome

    def _report(self, handler: Callable[..., Any], outcome: Outcome, label: str | None) -> None:
        if outcome.timed_out:
            self.log.error("%s timed out", label or getattr(handler, "__name__", "handler"))
        elif outcome.failure is not None:
            self.failed(handler, outcome.failure)

    async def verdict(self, handler: Callable[..., Any], *args: Any) -> SMTPError | None:
        """Run a handler that accepts or refuses; None if it accepted, else the reply."""
        return (await self.outcome(handler, lambda: handler(*args))).error

    def closing_reply(self, error: SMTPError) -> SMTPError:
        """A handler failure that ends the connection is answered 421, not 451."""
        if error is INTERNAL_ERROR or error is HANDLER_TIMEOUT:
            return SMTPError(421, f"{self.ctx.name} {error.message}", enhanced="4.3.0")
        return error

    def failed(self, handler: Callable[..., Any], error: BaseException) -> None:
        """A handler failed: log it with its traceback and report it (the ``error`` event)."""
        name = getattr(handler, "__name__", "handler")
        self.log.error("%s raised %r", name, error, exc_info=error)
        self.ctx.emit("error", error, self.session)

    async def decide(self, handler: Callable[..., Any] | None, *args: Any) -> None:
        """MAIL or RCPT: accepted without a handler, else as the handler decides."""
        core = self.core
        if handler is None:
            core.accept()
            return
        outcome = await self.outcome(handler, lambda: handler(*args))
        if outcome.error is not None:
            core.reject(outcome.error)
        else:
            core.accept(outcome.value if isinstance(outcome.value, str) else None)

    async def xclient(self) -> None:
        """XCLIENT gave a new client identity: check it like a new connection."""
        core, session = self.core, self.session
        self.log.info("XCLIENT: client is now %s (%s)", session.remote_address, session.client_hostname)
        handler = self.ctx.on_connect
        error = await self.verdict(handler, session) if handler is not None else None
        if error is not None:
            core.reject(error)
            return
        self.ctx.emit("connect", session)
        core.accept()

    async def authenticate(self, event: AuthAttempt) -> None:
        """Credentials: an `AuthResult` accepts; anything else fails, after ``auth_failure_delay``."""
        core, session, handler = self.core, self.session, self.ctx.on_auth
        assert handler is not None
        auth = event.auth
        outcome = await self.outcome(handler, lambda: handler(auth, session), label="on_auth")
        if outcome.failed:
            assert outcome.error is not None
            core.reject(outcome.error)
            return
        if outcome.error is None and isinstance(outcome.value, AuthResult):
            session.user = outcome.value.user if outcome.value.user is not None else auth.username
            self.log.info("authenticated as %r with %s", auth.username, auth.method)
            core.accept(outcome.value.message)
            return
        refusal = outcome.error
        if refusal is None:
            if outcome.value not in (None, False):
                self.log.warning("on_auth returned %r; return AuthResult(user=...) to accept", outcome.value)
            refusal = AUTH_FAILED
        self.log.info("authentication failed for %r with %s", auth.username, auth.method)
        if self.ctx.auth_failure_delay:
            self._wait_on(Waiting.HANDLER)
            try:
                await asyncio.sleep(self.ctx.auth_failure_delay)
            finally:
                self._wait_on(Waiting.INPUT)
        if not self._ended():
            core.reject(refusal)

    def end_data_now(self, message: OnDataCall | None, event: DataEnd) -> bool:
        """The end of a message, answered at once if on_data does not suspend: True if it
        was answered, False if the handler suspended (or runs beside the session) and
        `end_data` must finish the job. The caller runs this as the session task."""
        handler = self.ctx.on_data
        if message is None or handler is None:
            self.core.accept()
            return True
        if not message.deferred:
            return False
        self._end_stream(message.stream, event)
        try:
            value = message.run_now()
        except Exception as failure:
            outcome = outcome_of_failure(failure, message.stream)
        else:
            if value is SUSPENDED:
                return False
            outcome = outcome_of_value(value)
        self._answer_data(handler, message, outcome)
        return True

    async def end_data(self, message: OnDataCall | None, event: DataEnd) -> None:
        """The end of a message: on_data's verdict (or the body's own refusal) answers it."""
        core, ctx = self.core, self.ctx
        if message is None or ctx.on_data is None:
            core.accept()
            return
        stream = message.stream
        if not stream.ended:  # (it has, if end_data_now began the handler)
            self._end_stream(stream, event)
        outcome = await outcome_of(
            message.verdict, timeout=ctx.handler_timeout, wait_on=self._wait_on, waiting=_ON_DATA, stream=stream
        )
        self._answer_data(ctx.on_data, message, outcome)

    def _end_stream(self, stream: DataStream, event: DataEnd) -> None:
        if event.bare_lf and self.ctx.bare_lf == "reject":
            stream.abort(DataStreamError("message refused: bare LF in the body"))
        else:
            stream.finish()

    def _answer_data(self, handler: Callable[..., Any], message: OnDataCall, outcome: Outcome) -> None:
        core = self.core
        if outcome.timed_out or outcome.failure is not None:
            self._report(handler, outcome, "on_data")
        if outcome.body_refused is not None:
            self.log.info("message refused while being received: %s", outcome.body_refused)
            core.accept()  # the core turns a refused body into its 5xx reply
        elif outcome.error is not None:
            if outcome.timed_out and message.task is not None:
                message.task.cancel()
            core.reject(outcome.error)
        else:
            value = outcome.value
            try:
                core.accept(value if isinstance(value, (str, list)) else None)
            except (ValueError, TypeError) as error:  # an LMTP result list that does not fit
                self.failed(handler, error)
                core.reject(INTERNAL_ERROR)

    async def abort_data(self, message: OnDataCall | None, reason: str) -> None:
        """The transaction was dropped mid-message (BDAT then RSET): end the handler's stream."""
        if message is None:
            return
        message.abort(reason)
        task = message.task
        if task is None:
            return
        try:
            timeout = self.ctx.handler_timeout
            await (task if timeout is None else asyncio.wait_for(task, timeout))
        except asyncio.TimeoutError:
            task.cancel()
        except BaseException as error:  # the handler saw the abort; nothing to answer
            if isinstance(error, asyncio.CancelledError) and not task.cancelled():
                raise
            self.log.debug("on_data ended after abort: %r", error)

    async def on_secure(self, ssl_object: Any) -> bool:
        """Run on_secure; False (and the connection answered and closing) if it refused."""
        handler = self.ctx.on_secure
        assert handler is not None
        error = await self.verdict(handler, ssl_object, self.session)
        if error is None:
            return True
        if error.code not in (421, 554) and error.code // 100 == 5:
            error = SMTPError(554, error.message, enhanced=error.enhanced)
        error = self.closing_reply(error)
        self.log.info("on_secure refused: %s", error)
        self.core.refuse_connection(error)
        return False
