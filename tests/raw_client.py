"""RawClient: a plain socket speaking bytes, for exchanges real clients refuse to produce."""

from __future__ import annotations

import socket


class RawClient:
    """A plain socket speaking bytes, for exchanges real clients refuse to produce."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by server; pending {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def reply(self) -> tuple[int, str]:
        """One complete (possibly multi-line) reply: code and the text lines joined by \\n."""
        lines = []
        while True:
            line = self.read_line().decode("utf-8", "replace")
            assert len(line) >= 3 and line[:3].isdigit(), f"malformed reply line {line!r}"
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return int(line[:3]), "\n".join(lines)
            assert line[3] == "-", f"malformed reply line {line!r}"

    def replies(self, count: int) -> list[tuple[int, str]]:
        return [self.reply() for _ in range(count)]

    def command(self, line: str) -> tuple[int, str]:
        self.send(line + "\r\n")
        return self.reply()

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True if the server closed the connection (EOF) within ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except TimeoutError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()
