"""LMTP to a mailbox server (Dovecot's ``lmtp``, Cyrus): one outcome per recipient.

``LMTPDeliverer("127.0.0.1", 24)`` or ``LMTPDeliverer(path="/run/dovecot/lmtp")``. A
connection per attempt; the envelope is pipelined when the server offers PIPELINING
(LMTP servers must); after the data the server answers once per accepted recipient, so
one full mailbox does not make the others receive the message twice.
"""

from __future__ import annotations

import socket

from ..queue.base import DeliveryResult, QueuedMessage, Retry
from .client import MailClient, MailClientError, hand_over

__all__ = ["LMTPDeliverer"]


class LMTPDeliverer:
    """Delivers queued messages over LMTP, on TCP (``host``, ``port``) or a unix socket
    (``path``)."""

    def __init__(
        self,
        host: str = "",
        port: int = 24,
        *,
        path: str | None = None,
        timeout: float = 60.0,
        local_name: str | None = None,
    ) -> None:
        if path is None and not host:
            raise ValueError("LMTP needs a host or a unix socket path")
        self.host = host
        self.port = port
        self.path = path
        self.timeout = timeout
        self.local_name = local_name or socket.getfqdn()

    def describe(self) -> str:
        """``lmtp://HOST:PORT`` or ``lmtp:PATH``."""
        return f"lmtp:{self.path}" if self.path is not None else f"lmtp://{self.host}:{self.port}"

    async def __call__(self, message: QueuedMessage) -> DeliveryResult:
        try:
            client = await MailClient.connect(self.host, self.port, path=self.path, lmtp=True, timeout=self.timeout)
        except MailClientError as error:
            return Retry(str(error))
        return await hand_over(client, self._prepare, message)

    async def _prepare(self, client: MailClient) -> None:
        """LHLO."""
        await client.hello(self.local_name)
