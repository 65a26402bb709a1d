"""Client load for the crash and shutdown tests: threads of smtplib sessions that record
which messages were attempted and which got a 250, and clients that hang up mid-DATA."""

from __future__ import annotations

import smtplib
import socket
import threading
import time

MAX_MESSAGES_PER_THREAD = 5000


class Load:
    """``threads`` senders plus one mid-DATA quitter against ``port`` until `stop`."""

    def __init__(self, port: int, threads: int = 6) -> None:
        self.port = port
        self.attempted: set[str] = set()
        self.acked: set[str] = set()
        self.cut_off: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._sender, args=(n,), daemon=True) for n in range(threads)]
        self._threads.append(threading.Thread(target=self._quitter, daemon=True))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in self._threads), "a load thread did not stop"

    def wait_acked(self, count: int, timeout: float) -> None:
        """Until ``count`` more messages than now got a 250 (or ``timeout``: no error)."""
        target = len(self.acked) + count
        deadline = time.monotonic() + timeout
        while len(self.acked) < target and time.monotonic() < deadline:
            time.sleep(0.02)

    def _sender(self, number: int) -> None:
        for sequence in range(MAX_MESSAGES_PER_THREAD):
            if self._stop.is_set():
                return
            subject = f"load-{number}-{sequence}"
            body = f"From: a@client.test\r\nTo: b@mx.test\r\nSubject: {subject}\r\n\r\n{'x' * 200 * number}\r\n"
            with self._lock:
                self.attempted.add(subject)
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=15) as client:
                    client.sendmail("a@client.test", ["b@mx.test"], body.encode())
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)  # the server is down or shutting down: try the next one
                continue
            with self._lock:
                self.acked.add(subject)

    def _quitter(self) -> None:
        """Sessions that hang up in the middle of the message: never stored anywhere."""
        for sequence in range(MAX_MESSAGES_PER_THREAD):
            if self._stop.is_set():
                return
            subject = f"cut-{sequence}"
            self.cut_off.add(subject)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=15) as sock:
                    commands = b"EHLO q\r\nMAIL FROM:<q@client.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n"
                    sock.sendall(commands)
                    replies = b""
                    for _ in range(50):
                        replies += sock.recv(4096)
                        if b"354 " in replies or not replies:
                            break
                    sock.sendall(f"Subject: {subject}\r\n\r\nhalf of it\r\n".encode())
            except OSError:
                pass
            time.sleep(0.05)
