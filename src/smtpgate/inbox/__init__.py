"""The inbox: a searchable SQLite store of received messages, in mailboxes.

`InboxStore` works without the HTTP side (standard library only). The HTTP API
(`smtpgate.inbox.api`) and the client need the ``inbox`` extra (aiohttp) for the server;
the client (`smtpgate.inbox.client`) uses only the standard library.
"""

from __future__ import annotations

from .events import Event, Subscription
from .search import SearchError, parse_query
from .sink import InboxSink
from .store import InboxStore, RawMessage, StoreError

__all__ = ["InboxStore", "InboxSink", "RawMessage", "StoreError", "SearchError", "Event", "Subscription", "parse_query"]
