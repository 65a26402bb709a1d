"""The last line of an SMTP reply, for the bench scripts that talk SMTP themselves."""

from __future__ import annotations

import asyncio


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """The last line of the next reply (continuation lines, "250-", are skipped)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line
