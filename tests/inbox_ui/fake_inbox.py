"""A stand-in for the inbox API while it is being built: Mailpit-shaped JSON from memory.

Only for developing the UI; the browser tests run against the real server.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import json
import threading
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import Any

from aiohttp import web

from smtpgate import SMTPServer
from smtpgate.inbox.ui import ui_routes


def _addresses(value: str | None) -> list[dict[str, str]]:
    return [{"Name": name, "Address": address} for name, address in email.utils.getaddresses([value or ""]) if address]


class FakeInbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []  # newest first
        self.raw: dict[str, bytes] = {}
        self.sockets: set[web.WebSocketResponse] = set()
        self.counter = 0

    def store(self, data: bytes, recipients: list[str]) -> dict[str, Any]:
        self.counter += 1
        message_id = f"m{self.counter:04d}"
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        html_part = parsed.get_body(("html",))
        text_part = parsed.get_body(("plain",))
        inline, attachments = [], []
        for index, part in enumerate(parsed.walk()):
            if part.is_multipart() or part in (html_part, text_part):
                continue
            entry = {
                "PartID": str(index),
                "FileName": part.get_filename() or "",
                "ContentType": part.get_content_type(),
                "ContentID": (part.get("Content-ID") or "").strip("<>"),
                "Size": len(part.get_payload(decode=True) or b""),
                "payload": part.get_payload(decode=True) or b"",
            }
            (inline if entry["ContentID"] and not part.get_filename() else attachments).append(entry)
        text = text_part.get_content() if text_part else ""
        full = {
            "ID": message_id,
            "MessageID": (parsed.get("Message-ID") or "").strip("<>"),
            "From": (_addresses(parsed.get("From")) or [{"Name": "", "Address": ""}])[0],
            "To": _addresses(parsed.get("To")),
            "Cc": _addresses(parsed.get("Cc")),
            "Bcc": [],
            "ReplyTo": _addresses(parsed.get("Reply-To")),
            "Subject": parsed.get("Subject") or "",
            "Date": datetime.now(timezone.utc).isoformat(),
            "Created": datetime.now(timezone.utc).isoformat(),
            "Tags": [],
            "Text": text,
            "HTML": html_part.get_content() if html_part else "",
            "Size": len(data),
            "Inline": inline,
            "Attachments": attachments,
            "Read": False,
            "Snippet": " ".join(text.split())[:250],
            "Mailboxes": sorted({r.lower() for r in recipients}),
            "headers": {k: parsed.get_all(k) for k in sorted(set(parsed.keys()))},
        }
        self.messages.insert(0, full)
        self.raw[message_id] = data
        self.broadcast({"Type": "new", "Data": self.summary(full)})
        return full

    @staticmethod
    def summary(message: dict[str, Any]) -> dict[str, Any]:
        keys = [
            "ID",
            "MessageID",
            "Read",
            "From",
            "To",
            "Cc",
            "Bcc",
            "ReplyTo",
            "Subject",
            "Created",
            "Tags",
            "Size",
            "Snippet",
        ]
        result = {key: message[key] for key in keys}
        result["Attachments"] = len(message["Attachments"])
        return result

    @staticmethod
    def public(message: dict[str, Any]) -> dict[str, Any]:
        result = {k: v for k, v in message.items() if k not in {"Read", "Snippet", "Mailboxes", "headers", "Created"}}
        for key in ("Inline", "Attachments"):
            result[key] = [{k: v for k, v in part.items() if k != "payload"} for part in message[key]]
        return result

    def broadcast(self, event: dict[str, Any]) -> None:
        for socket in list(self.sockets):
            asyncio.ensure_future(socket.send_str(json.dumps(event)))

    def find(self, message_id: str) -> dict[str, Any] | None:
        if message_id == "latest":
            return self.messages[0] if self.messages else None
        return next((m for m in self.messages if m["ID"] == message_id), None)

    def matches(self, message: dict[str, Any], query: str) -> bool:
        for word in query.split():
            negate = word.startswith("-")
            word = word.lstrip("-").lower()
            if word == "is:unread":
                hit = not message["Read"]
            elif word == "is:read":
                hit = message["Read"]
            elif word.startswith("subject:"):
                hit = word[8:] in message["Subject"].lower()
            elif word.startswith("from:"):
                hit = word[5:] in json.dumps(message["From"]).lower()
            else:
                hit = word in (message["Subject"] + message["Text"] + json.dumps(message["From"])).lower()
            if hit == negate:
                return False
        return True

    def routes(self) -> list[web.RouteDef]:
        async def message_json(message_id: str) -> dict[str, Any] | None:
            found = self.find(message_id)
            return self.public(found) if found else None

        def listing(request: web.Request, query: str) -> web.Response:
            mailbox = request.query.get("mailbox", "").lower()
            pool = [m for m in self.messages if not mailbox or mailbox in m["Mailboxes"]]
            matching = [m for m in pool if self.matches(m, query)]
            start, limit = int(request.query.get("start", 0)), int(request.query.get("limit", 50))
            return web.json_response(
                {
                    "total": len(pool),
                    "unread": sum(not m["Read"] for m in pool),
                    "count": len(matching[start : start + limit]),
                    "messages_count": len(matching),
                    "start": start,
                    "tags": [],
                    "messages": [self.summary(m) for m in matching[start : start + limit]],
                }
            )

        async def messages(request: web.Request) -> web.Response:
            return listing(request, "")

        async def search(request: web.Request) -> web.Response:
            if request.method == "DELETE":
                mailbox = request.query.get("mailbox", "").lower()
                doomed = [
                    m
                    for m in self.messages
                    if (not mailbox or mailbox in m["Mailboxes"]) and self.matches(m, request.query.get("query", ""))
                ]
                for m in doomed:
                    self.messages.remove(m)
                    self.broadcast({"Type": "delete", "Data": {"ID": m["ID"]}})
                return web.Response(text="ok")
            return listing(request, request.query.get("query", ""))

        async def change(request: web.Request) -> web.Response:
            body = await request.json() if request.can_read_body else {}
            ids = body.get("IDs") or [m["ID"] for m in self.messages]
            for message_id in ids:
                found = self.find(message_id)
                if found is None:
                    continue
                if request.method == "PUT":
                    found["Read"] = bool(body.get("Read"))
                    self.broadcast({"Type": "update", "Data": {"ID": message_id, "Read": found["Read"]}})
                else:
                    self.messages.remove(found)
                    self.broadcast({"Type": "delete", "Data": {"ID": message_id}})
            return web.Response(text="ok")

        async def message(request: web.Request) -> web.Response:
            found = self.find(request.match_info["id"])
            if found is None:
                return web.json_response({"Error": "not found"}, status=404)
            suffix = request.match_info.get("what", "")
            if suffix == "headers":
                return web.json_response(found["headers"])
            if suffix == "raw":
                return web.Response(body=self.raw[found["ID"]], content_type="text/plain")
            return web.json_response(self.public(found))

        async def part(request: web.Request) -> web.Response:
            found = self.find(request.match_info["id"])
            for entry in (found or {}).get("Inline", []) + (found or {}).get("Attachments", []):
                if entry["PartID"] == request.match_info["part"]:
                    return web.Response(body=entry["payload"], content_type=entry["ContentType"])
            raise web.HTTPNotFound()

        async def mailboxes(request: web.Request) -> web.Response:
            names = sorted({box for m in self.messages for box in m["Mailboxes"]})
            return web.json_response(
                [
                    {
                        "Mailbox": name,
                        "Total": sum(name in m["Mailboxes"] for m in self.messages),
                        "Unread": sum(name in m["Mailboxes"] and not m["Read"] for m in self.messages),
                    }
                    for name in names
                ]
            )

        async def info(request: web.Request) -> web.Response:
            return web.json_response(
                {"Messages": len(self.messages), "Unread": sum(not m["Read"] for m in self.messages)}
            )

        async def events(request: web.Request) -> web.WebSocketResponse:
            socket = web.WebSocketResponse()
            await socket.prepare(request)
            self.sockets.add(socket)
            try:
                async for _ in socket:
                    pass
            finally:
                self.sockets.discard(socket)
            return socket

        return [
            web.get("/api/v1/messages", messages),
            web.put("/api/v1/messages", change),
            web.delete("/api/v1/messages", change),
            web.get("/api/v1/search", search),
            web.delete("/api/v1/search", search),
            web.get("/api/v1/message/{id}", message),
            web.get("/api/v1/message/{id}/{what:headers|raw}", message),
            web.get("/api/v1/message/{id}/part/{part}", part),
            web.get("/api/v1/mailboxes", mailboxes),
            web.get("/api/events", events),
            web.get("/api/v1/info", info),
            *ui_routes(message_json),
        ]


class FakeServer:
    """The fake API plus a real smtpgate SMTP server feeding it, in one thread."""

    def __init__(self) -> None:
        self.inbox = FakeInbox()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.http_port = 0
        self.smtp_port = 0

    def start(self) -> FakeServer:
        self.thread.start()
        assert self.ready.wait(20)
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.add_routes(self.inbox.routes())
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        async def on_data(stream: Any, session: Any) -> None:
            data = await stream.read()
            self.inbox.store(data, [r.address for r in session.envelope.rcpt_to])

        self.smtp = SMTPServer(name="mx.test", disable_reverse_lookup=True, on_data=on_data)
        await self.smtp.listen(port=0, host="127.0.0.1")
        self.smtp_port = self.smtp.port
        self.ready.set()

    def stop(self) -> None:
        async def stop() -> None:
            for socket in list(self.inbox.sockets):
                await socket.close()
            await self.smtp.close()
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(20)
