"""Helpers for the web UI tests: a recording HTTP server, a bounded wait, a running inbox."""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from selenium.common.exceptions import StaleElementReferenceException
from ui_samples import png

PIXEL = png(1, 1, (255, 0, 0), (255, 0, 0))


class Recorder:
    """An HTTP server on 127.0.0.1 that answers every GET with a tiny PNG and records the path."""

    def __init__(self) -> None:
        hits = self.hits = []  # type: list[str]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PIXEL)))
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                self.wfile.write(PIXEL)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true (bounded in time). An element
    that the page replaced while the predicate looked at it counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except StaleElementReferenceException:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Inbox:
    """A running inbox: SMTP on ``smtp_port``, the UI and API at ``url``."""

    def __init__(self, url: str, smtp_port: int) -> None:
        self.url = url
        self.smtp_port = smtp_port

    def send(self, message: bytes, recipients: list[str] | None = None, sender: str = "sender@example.test") -> None:
        with smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.test", timeout=20) as client:
            client.sendmail(sender, recipients or ["dev@example.test"], message)


def texts(browser: Any, selector: str) -> list[str] | None:
    """The texts of the elements ``selector`` finds (None if the page re-rendered meanwhile)."""
    from selenium.webdriver.common.by import By

    try:
        return [element.text for element in browser.find_elements(By.CSS_SELECTOR, selector)]
    except StaleElementReferenceException:
        return None
