"""The `Limiter`: wraps an SMTPServer's handlers to enforce a `LimitPolicy`."""

from __future__ import annotations

import inspect
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import SMTPError
from ..session import Address, Session
from .backend import LimitBackend, MemoryBackend, Verdict
from .policy import LimitPolicy, Rate

__all__ = ["Limiter", "LIMIT_NAMES"]

logger = logging.getLogger("smtpgate.limits")

LIMIT_NAMES = ("connections", "connection_rate", "messages", "recipients")
"""The ``limit`` label of `Limiter.on_refusal` calls (and of the refusal metric)."""

_SLOT = "_smtpgate_limit_slot"  # session attribute: (client key, holder) of the slot held
_TRUSTED = "_smtpgate_limit_trusted"
_WARN_EVERY = 30.0


async def _call(handler: Callable[..., Any] | None, *args: Any) -> Any:
    if handler is None:
        return None
    result = handler(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class Limiter:
    """Per-client and per-sender limits, kept in a `LimitBackend` (in-process by default,
    `RedisBackend` to share them between receivers).

    ```python
    limiter = Limiter(LimitPolicy(connections=10, messages=parse_rate("60/min")))
    server = SMTPServer(**limiter.wrap({"on_data": on_data}))
    await limiter.start()
    ```

    If the backend fails (Redis unreachable), mail is let through and a warning logged:
    the limits fail open, the mail does not stop.
    """

    def __init__(self, policy: LimitPolicy, backend: LimitBackend | None = None) -> None:
        self.policy = policy
        self.backend: LimitBackend = backend if backend is not None else MemoryBackend()
        self.receiver_id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.on_refusal: list[Callable[[str], None]] = []
        """Called with the limit's name (one of `LIMIT_NAMES`) on every refusal."""
        self._last_warning = 0.0

    async def start(self) -> None:
        """Connect the backend; raises ``OSError`` (or redis-py's error) if it cannot."""
        await self.backend.start()

    async def close(self) -> None:
        await self.backend.close()

    def wrap(self, handlers: Mapping[str, Any]) -> dict[str, Any]:
        """SMTPServer options with ``on_connect``, ``on_mail_from``, ``on_rcpt_to`` and
        ``on_close`` wrapped (the limits first, then the given handler); other options
        are returned as they are."""
        options = dict(handlers)
        inner_connect = options.get("on_connect")
        inner_mail = options.get("on_mail_from")
        inner_rcpt = options.get("on_rcpt_to")
        inner_close = options.get("on_close")

        async def on_connect(session: Session) -> Any:
            await self.check_connection(session)
            return await _call(inner_connect, session)

        async def on_mail_from(address: Address, session: Session) -> Any:
            await self.check_mail(address, session)
            return await _call(inner_mail, address, session)

        async def on_rcpt_to(address: Address, session: Session) -> Any:
            await self.check_rcpt(session)
            return await _call(inner_rcpt, address, session)

        async def on_close(session: Session) -> Any:
            try:
                return await _call(inner_close, session)
            finally:
                await self.end_connection(session)

        options.update(on_connect=on_connect, on_mail_from=on_mail_from, on_rcpt_to=on_rcpt_to, on_close=on_close)
        return options

    # ------------------------------------------------------------ the checks

    def _trusted(self, session: Session) -> bool:
        return session.remote_address in self.policy.trusted_networks

    async def check_connection(self, session: Session) -> None:
        """A new client (or a new identity from XCLIENT): take a slot and count the
        connection; raises ``SMTPError(421, ...)`` over a limit."""
        await self.end_connection(session)  # XCLIENT: the old identity's slot goes back
        trusted = self._trusted(session)
        setattr(session, _TRUSTED, trusted)
        policy = self.policy
        if trusted or not (policy.connections or policy.connection_rate.count):
            return
        key = policy.client_key(session.remote_address)
        if policy.connections:
            holder = f"{self.receiver_id}:{session.id}"
            verdict = await self._ask(self.backend.acquire(key, holder, policy.connections))
            if not verdict.allowed:
                self._refused("connections", session)
                raise SMTPError(
                    421,
                    f"Too many concurrent connections from {key} (limit {policy.connections}), try again later",
                    enhanced="4.7.0",
                )
            setattr(session, _SLOT, (key, holder))
        if policy.connection_rate.count:
            rate = policy.connection_rate
            verdict = await self._ask(self.backend.hit("c:" + key, rate.count, rate.period))
            if not verdict.allowed:
                self._refused("connection_rate", session)
                raise SMTPError(
                    421, f"Too many connections from {key} (limit {rate}), try again later", enhanced="4.7.0"
                )

    async def end_connection(self, session: Session) -> None:
        """Give the session's connection slot back (from on_close)."""
        slot = getattr(session, _SLOT, None)
        if slot is None:
            return
        setattr(session, _SLOT, None)
        try:
            await self.backend.release(*slot)
        except Exception as error:
            self._warn(f"cannot release a connection slot (it expires by itself): {error}")

    async def check_mail(self, address: Address, session: Session) -> None:
        """MAIL FROM: count a message for the client and the sender."""
        rate = self.policy.messages
        if rate.count and not getattr(session, _TRUSTED, False):
            sender = address.address.lower() or "<>"
            await self._rate("messages", rate, session, sender, "message")

    async def check_rcpt(self, session: Session) -> None:
        """RCPT TO: count a recipient for the client and the sender."""
        rate = self.policy.recipients
        if rate.count and not getattr(session, _TRUSTED, False):
            mail_from = session.envelope.mail_from
            sender = (mail_from.address.lower() if mail_from else "") or "<>"
            await self._rate("recipients", rate, session, sender, "recipient")

    async def _rate(self, name: str, rate: Rate, session: Session, sender: str, noun: str) -> None:
        client = self.policy.client_key(session.remote_address)
        prefix = name[0]
        for key, who in ((f"{prefix}:ip:{client}", client), (f"{prefix}:from:{sender}", f"<{sender.strip('<>')}>")):
            verdict = await self._ask(self.backend.hit(key, rate.count, rate.period))
            if not verdict.allowed:
                self._refused(name, session)
                raise SMTPError(450, f"Too many {noun}s from {who} (limit {rate}), try again later", enhanced="4.7.1")

    async def _ask(self, call: Any) -> Verdict:
        try:
            verdict: Verdict = await call
        except Exception as error:  # fail open: a broken counter store must not stop mail
            self._warn(f"limit backend failed, not limiting: {error}")
            return Verdict(True, 0)
        return verdict

    def _refused(self, name: str, session: Session) -> None:
        logger.info("[%s] %s limit reached for %s", session.id, name, session.remote_address)
        for callback in self.on_refusal:
            callback(name)

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            logger.warning("limits: %s", text)
