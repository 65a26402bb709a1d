"""A small client for smtpgate's inbox API (and Mailpit's), standard library only.

``InboxClient("http://127.0.0.1:8025")`` for scripts and tests against a server in
another process or container; `AsyncInboxClient` has the same methods as coroutines
(each request runs in a worker thread). ``client.for_mailbox("a-1@test")`` scopes every
listing, search, delete and wait to one mailbox.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

__all__ = ["InboxClient", "AsyncInboxClient", "InboxError", "InboxTimeout"]


class InboxError(Exception):
    """The server answered an error; `status` and the server's `text`."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.text = text


class InboxTimeout(InboxError, TimeoutError):
    """`InboxClient.wait_for` saw no matching message in time."""


class InboxClient:
    """Blocking client; methods return the API's JSON (dicts and lists)."""

    def __init__(
        self,
        url: str,
        *,
        mailbox: str | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.mailbox = mailbox
        self.auth = auth
        self.timeout = timeout

    def for_mailbox(self, mailbox: str) -> InboxClient:
        """The same server, every call scoped to ``mailbox``."""
        return InboxClient(self.url, mailbox=mailbox, auth=self.auth, timeout=self.timeout)

    # ------------------------------------------------------------- transport

    def _request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if self.mailbox and "mailbox" not in query:
            query["mailbox"] = self.mailbox
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.auth is not None:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode("ascii")
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                decoded = json.loads(payload)
            except ValueError:
                decoded = None
            text = decoded.get("Error", "") if isinstance(decoded, dict) else payload.decode("utf-8", "replace")
            if isinstance(decoded, dict) and decoded.get("Timeout"):
                raise InboxTimeout(error.code, text) from None
            raise InboxError(error.code, text) from None

    def _json(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        _, payload = self._request(method, path, params, body)
        return json.loads(payload)

    # ------------------------------------------------------------- API

    def info(self) -> dict[str, Any]:
        """``GET /api/v1/info``."""
        result: dict[str, Any] = self._json("GET", "/api/v1/info")
        return result

    def messages(self, *, start: int = 0, limit: int = 50) -> dict[str, Any]:
        """A page of summaries, newest first (``messages``, ``total``, ``unread``, ...)."""
        result: dict[str, Any] = self._json("GET", "/api/v1/messages", {"start": start, "limit": limit})
        return result

    def search(self, query: str, *, start: int = 0, limit: int = 50) -> dict[str, Any]:
        """Summaries matching a Mailpit search query."""
        params = {"query": query, "start": start, "limit": limit}
        result: dict[str, Any] = self._json("GET", "/api/v1/search", params)
        return result

    def message(self, message_id: str = "latest") -> dict[str, Any]:
        """A whole parsed message (``Text``, ``HTML``, ``Attachments``, ...); marks it read."""
        result: dict[str, Any] = self._json("GET", f"/api/v1/message/{urllib.parse.quote(message_id)}")
        return result

    def headers(self, message_id: str = "latest") -> dict[str, list[str]]:
        result: dict[str, list[str]] = self._json("GET", f"/api/v1/message/{urllib.parse.quote(message_id)}/headers")
        return result

    def raw(self, message_id: str = "latest") -> bytes:
        """The message exactly as received."""
        return self._request("GET", f"/api/v1/message/{urllib.parse.quote(message_id)}/raw")[1]

    def part(self, message_id: str, part_id: str) -> bytes:
        """One attachment or inline part, decoded."""
        path = f"/api/v1/message/{urllib.parse.quote(message_id)}/part/{urllib.parse.quote(part_id)}"
        return self._request("GET", path)[1]

    def mailboxes(self) -> list[dict[str, Any]]:
        """Every mailbox with its ``Total`` and ``Unread`` counts."""
        result: list[dict[str, Any]] = self._json("GET", "/api/v1/mailboxes")
        return result

    def delete(self, ids: Iterable[str] | None = None, *, query: str | None = None) -> None:
        """Delete these IDs, or the messages matching ``query``, or all (of the mailbox)."""
        if query:
            self._request("DELETE", "/api/v1/search", {"query": query})
        else:
            self._request("DELETE", "/api/v1/messages", body={"IDs": list(ids or [])})

    def mark_read(self, ids: Iterable[str] | None = None, read: bool = True, *, query: str | None = None) -> None:
        """Mark these IDs (or those matching ``query``, or all) read or unread."""
        body: dict[str, Any] = {"Read": read, "IDs": list(ids or [])}
        if query:
            body["Search"] = query
        self._request("PUT", "/api/v1/messages", body=body)

    def tags(self) -> list[str]:
        """The tags in use (of the mailbox)."""
        result: list[str] = self._json("GET", "/api/v1/tags")
        return result

    def set_tags(self, ids: Iterable[str], tags: Iterable[str]) -> None:
        """Replace the tags of these messages (no tags: remove them all)."""
        self._request("PUT", "/api/v1/tags", body={"IDs": list(ids), "Tags": list(tags)})

    def rename_tag(self, tag: str, new_name: str) -> None:
        """Rename a tag on every message that has it."""
        self._request("PUT", f"/api/v1/tags/{urllib.parse.quote(tag, safe='')}", body={"Name": new_name})

    def delete_tag(self, tag: str) -> None:
        """Remove a tag from every message (the messages stay)."""
        self._request("DELETE", f"/api/v1/tags/{urllib.parse.quote(tag, safe='')}")

    def wait_for(self, query: str = "", *, timeout: float = 10.0) -> dict[str, Any]:
        """The newest message matching ``query`` once there is one (no polling: one
        request that the server answers when the message arrives). Raises `InboxTimeout`
        after ``timeout`` seconds."""
        params = {"query": query, "timeout": f"{timeout:g}"}
        _, payload = self._request("GET", "/api/v1/wait", params, timeout=timeout + self.timeout)
        result: dict[str, Any] = json.loads(payload)
        return result

    def chaos(self, triggers: dict[str, Any] | None = None) -> dict[str, Any]:
        """Read (or with ``triggers``, set) the chaos triggers."""
        if triggers is None:
            current: dict[str, Any] = self._json("GET", "/api/v1/chaos")
            return current
        updated: dict[str, Any] = self._json("PUT", "/api/v1/chaos", body=triggers)
        return updated


class AsyncInboxClient:
    """`InboxClient`'s methods as coroutines (each request in a worker thread)."""

    def __init__(
        self, url: str, *, mailbox: str | None = None, auth: tuple[str, str] | None = None, timeout: float = 30.0
    ) -> None:
        self.sync = InboxClient(url, mailbox=mailbox, auth=auth, timeout=timeout)

    def for_mailbox(self, mailbox: str) -> AsyncInboxClient:
        return AsyncInboxClient(self.sync.url, mailbox=mailbox, auth=self.sync.auth, timeout=self.sync.timeout)

    async def info(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.info)

    async def messages(self, *, start: int = 0, limit: int = 50) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.messages, start=start, limit=limit)

    async def search(self, query: str, *, start: int = 0, limit: int = 50) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.search, query, start=start, limit=limit)

    async def message(self, message_id: str = "latest") -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.message, message_id)

    async def headers(self, message_id: str = "latest") -> dict[str, list[str]]:
        return await asyncio.to_thread(self.sync.headers, message_id)

    async def raw(self, message_id: str = "latest") -> bytes:
        return await asyncio.to_thread(self.sync.raw, message_id)

    async def part(self, message_id: str, part_id: str) -> bytes:
        return await asyncio.to_thread(self.sync.part, message_id, part_id)

    async def mailboxes(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.sync.mailboxes)

    async def delete(self, ids: Iterable[str] | None = None, *, query: str | None = None) -> None:
        await asyncio.to_thread(self.sync.delete, ids, query=query)

    async def mark_read(self, ids: Iterable[str] | None = None, read: bool = True, *, query: str | None = None) -> None:
        await asyncio.to_thread(self.sync.mark_read, ids, read, query=query)

    async def tags(self) -> list[str]:
        return await asyncio.to_thread(self.sync.tags)

    async def set_tags(self, ids: Iterable[str], tags: Iterable[str]) -> None:
        await asyncio.to_thread(self.sync.set_tags, list(ids), list(tags))

    async def rename_tag(self, tag: str, new_name: str) -> None:
        await asyncio.to_thread(self.sync.rename_tag, tag, new_name)

    async def delete_tag(self, tag: str) -> None:
        await asyncio.to_thread(self.sync.delete_tag, tag)

    async def wait_for(self, query: str = "", *, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.wait_for, query, timeout=timeout)

    async def chaos(self, triggers: dict[str, Any] | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.chaos, triggers)
