"""The server's log lines, as pytest's caplog captured them."""

from __future__ import annotations

import logging
import time

import pytest


def smtpgate_messages(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    """Messages of the ``smtpgate`` logger at ``level`` or above."""
    return [r.getMessage() for r in list(caplog.records) if r.name == "smtpgate" and r.levelno >= level]


def wait_for_log(caplog: pytest.LogCaptureFixture, fragment: str, timeout: float = 5.0) -> logging.LogRecord:
    """The first ``smtpgate`` record containing ``fragment``, waiting up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        for record in list(caplog.records):
            if record.name == "smtpgate" and fragment in record.getMessage():
                return record
        if time.monotonic() > deadline:
            raise AssertionError(f"no smtpgate log line containing {fragment!r}; got {smtpgate_messages(caplog)}")
        time.sleep(0.01)
