"""``--deliver``: the command's queue (a sink in its list) and its delivery worker."""

from __future__ import annotations

import logging
import socket
import ssl
from typing import TYPE_CHECKING

from ..queue.base import Deliverer
from ..queue.bounce import Bouncer
from ..queue.local import LocalQueue
from ..queue.worker import DeliveryWorker
from ..sinks import SinkError
from .app import StartupError

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["DeliveryService"]

logger = logging.getLogger("smtpgate.cli")


def _duration_text(seconds: float) -> str:
    """``5d``, ``12h``, ``90m``, ``45s``: the largest unit that divides it, else seconds."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _first_line(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            line = handle.readline().strip()
    except OSError as error:
        raise StartupError(f"cannot read the {what} {path!r}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise StartupError(f"the {what} {path!r} is not UTF-8 text") from None
    if not line:
        raise StartupError(f"the {what} {path!r} is empty")
    return line


def build_deliverer(settings: Settings) -> Deliverer:
    """The deliverer of ``--deliver`` and its flags; raises `StartupError`."""
    from ..deliver import parse_deliverer

    assert settings.deliver is not None
    secret = None
    if settings.webhook_secret_file is not None:
        secret = _first_line(settings.webhook_secret_file, "webhook secret file")
    username = password = None
    if settings.relay_auth_file is not None:
        line = _first_line(settings.relay_auth_file, "relay auth file")
        username, sep, password = line.partition(":")
        if not sep or not username:
            raise StartupError(f"the relay auth file {settings.relay_auth_file!r} must hold USER:PASSWORD")
    context = None
    if settings.deliver_ca_file is not None:
        try:
            context = ssl.create_default_context(cafile=settings.deliver_ca_file)
        except (OSError, ssl.SSLError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise StartupError(f"cannot load --deliver-ca-file {settings.deliver_ca_file!r}: {reason}") from None
    try:
        return parse_deliverer(
            settings.deliver,
            webhook_secret=secret,
            webhook_format=settings.webhook_format,
            tls_context=context,
            username=username,
            password=password,
            concurrency=settings.deliver_concurrency,
        )
    except ValueError as error:
        raise StartupError(str(error)) from None


class DeliveryService:
    """The queue of ``--queue`` and the worker that delivers it to ``--deliver``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.deliverer = build_deliverer(settings)
        self.queue = self.open_queue()
        self.worker: DeliveryWorker | None = None

    def open_queue(self) -> LocalQueue:
        """A new queue object on the queue directory (a forked worker makes its own)."""
        s = self.settings
        try:
            self.queue = LocalQueue(s.queue, max_size=s.queue_max_size, max_messages=s.queue_max_messages)
        except SinkError as error:
            raise StartupError(str(error)) from None
        return self.queue

    async def start(self) -> None:
        """Start delivering (the queue itself was started with the other sinks)."""
        s = self.settings
        bouncer = Bouncer(self.queue, s.name or socket.getfqdn()) if s.bounce else None
        self.worker = DeliveryWorker(
            self.queue,
            self.deliverer,
            concurrency=s.deliver_concurrency,
            retry_min=s.retry_min,
            max_age=s.retry_max_age,
            on_dead=bouncer,
        )
        await self.worker.start()
        logger.info(
            "delivering %s to %s (up to %d at once, first retry after %s, dead-letter after %s)",
            self.queue.describe(),
            self.worker.target,
            s.deliver_concurrency,
            _duration_text(s.retry_min),
            _duration_text(s.retry_max_age),
        )

    async def stop(self) -> None:
        """Stop the worker (attempts in flight get a few seconds) and close the deliverer."""
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        close = getattr(self.deliverer, "close", None)
        if close is not None:
            try:
                await close()
            except Exception:
                logger.exception("closing the deliverer failed")
