"""Logging for the command: text or JSON lines on stderr, held back until start-up
succeeded (so a failed start prints only its one error line)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["setup_logging", "StartupHandler", "utc_timestamp", "JSONFormatter", "TextFormatter"]


def utc_timestamp(when: float | None = None, *, millis: bool = False) -> str:
    """``2026-11-26T10:01:02Z`` (with ``.123`` when ``millis``)."""
    when = time.time() if when is None else when
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    if millis:
        text += f".{int(when % 1 * 1000):03d}"
    return text + "Z"


class TextFormatter(logging.Formatter):
    """``TIME LEVEL message`` (the library puts the session id in the message)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{utc_timestamp(record.created, millis=True)} {record.levelname:<7} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, session, pid, exception."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": utc_timestamp(record.created, millis=True),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        session = getattr(record, "connection_id", None)
        if session is not None:
            data["session"] = session
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class StartupHandler(logging.Handler):
    """Keeps records until `start_output` (start-up went well: write them) or
    `discard` (start-up failed: the error line says it all)."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__()
        self.target = target
        self._held: list[logging.LogRecord] | None = []

    def emit(self, record: logging.LogRecord) -> None:
        if self._held is not None:
            self._held.append(record)
        else:
            self.target.handle(record)

    def start_output(self) -> None:
        held, self._held = self._held or [], None
        for record in held:
            if record.levelno >= self.target.level:
                self.target.handle(record)

    def discard(self) -> None:
        self._held = []


def setup_logging(log_format: str, level: str, stream: TextIO | None = None) -> StartupHandler:
    """Send the ``smtpgate`` loggers to stderr; returns the holding handler."""
    target = logging.StreamHandler(stream or sys.stderr)
    target.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    handler = StartupHandler(target)
    logger = logging.getLogger("smtpgate")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return handler
