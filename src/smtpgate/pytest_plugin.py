"""pytest plugin: a real SMTP server for each test that asks for one.

Fixtures (see ``docs/testing.md``):

* ``smtpgate_server`` — a running `SMTPTestServer` on 127.0.0.1 and a free port;
  options from ``@pytest.mark.smtpgate(...)``.
* ``smtpgate_server_factory`` — ``factory(**options)`` starts more servers.
* ``smtpgate_inbox`` — an `smtpgate.inbox.client.InboxClient` for a running
  ``smtpgate --http`` given by ``--smtpgate-url URL`` or the ``SMTPGATE_URL`` environment
  variable: ``smtpgate_inbox.wait_for("to:a@test subject:Welcome", timeout=10)``.
* ``smtpgate_mailbox`` — the same client scoped to a fresh mailbox address of its own
  (``smtpgate_mailbox.mailbox``), so tests running in parallel never see each other's mail.

The module imports only pytest and the standard library at load time (smtpgate itself is
imported when a fixture is first used), so projects that do not use it pay nothing.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, overload

import pytest

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from smtpgate import AuthRequest, AuthResult, DataStream, ServerThread, Session, SMTPServer
    from smtpgate.inbox.client import InboxClient
    from smtpgate.options import ServerSettings

__all__ = ["CapturedMessage", "SMTPTestServer"]

_MARKER_HELP = (
    "smtpgate(**options): options of the smtpgate_server fixture: users={'name': 'password'}, "
    "reject_recipients=[...], reject_senders=[...], implicit_tls=True, size=..., or any SMTPServer option"
)


class CapturedMessage(EmailMessage):
    """A received message: a parsed `email.message.EmailMessage` (so
    ``msg["Subject"]``, ``msg.get_content()``) plus the envelope and the raw bytes."""

    mail_from: str = ""
    """The MAIL FROM address (``""`` for a bounce)."""
    rcpt_to: list[str]
    """The accepted RCPT TO addresses."""
    raw: bytes = b""
    """The message exactly as received (CRLF line endings, dot-unstuffed)."""
    user: Any = None
    """``session.user`` of an authenticated client, else None."""
    secure: bool = False
    """True if the message came over TLS."""
    received: float = 0.0
    """When it arrived (``time.time()``)."""


def _parse(raw: bytes) -> CapturedMessage:
    parser = email.parser.BytesParser(_class=CapturedMessage, policy=email.policy.default)
    message = parser.parsebytes(raw.replace(b"\r\n", b"\n"))
    assert isinstance(message, CapturedMessage)
    return message


class SMTPTestServer:
    """An SMTP server in a background thread that keeps every message it accepts.

    Options beyond `smtpgate.SMTPServer`'s:

    * ``users``: ``{"user": "password"}``; AUTH (PLAIN and LOGIN; add CRAM-MD5 with
      ``auth_methods``) is then offered, also without TLS, and required unless
      ``auth_optional=True``;
    * ``reject_recipients`` / ``reject_senders``: addresses answered ``550``;
    * ``implicit_tls=True``: TLS from the first byte (``secure=True``);
    * ``loop_factory``: makes the server thread's event loop (default: asyncio's), e.g.
      ``uvloop.new_event_loop``, as `smtpgate.ServerThread` takes it.

    A generated certificate serves STARTTLS; clients must not verify it (see
    `client_ssl_context`). Defaults suited to tests: name ``smtpgate.test``, no
    reverse lookups, no delay after a failed AUTH, ``close_timeout`` of 2 seconds.
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        reject_recipients: Iterable[str] = (),
        reject_senders: Iterable[str] = (),
        implicit_tls: bool = False,
        host: str = "127.0.0.1",
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        **options: Unpack[ServerSettings],
    ) -> None:
        self.users = dict(users) if users is not None else None
        self.reject_recipients = {address.lower() for address in reject_recipients}
        self.reject_senders = {address.lower() for address in reject_senders}
        self.messages: list[CapturedMessage] = []
        """Every accepted message, oldest first."""
        self._condition = threading.Condition()
        self._searchables: dict[int, Any] = {}
        for name in ("on_data", "on_auth"):
            if name in options:
                raise TypeError(f"smtpgate_server: {name!r} is provided by the fixture; read .messages instead")
        self._user_rcpt = options.pop("on_rcpt_to", None)
        self._user_mail = options.pop("on_mail_from", None)
        options.setdefault("name", "smtpgate.test")
        options.setdefault("disable_reverse_lookup", True)
        options.setdefault("close_timeout", 2.0)
        if implicit_tls:
            options["secure"] = True
        if self.users is not None:
            options.setdefault("auth_methods", ["PLAIN", "LOGIN"])
            options.setdefault("allow_insecure_auth", True)
            options.setdefault("auth_failure_delay", 0.0)
            options["on_auth"] = self._on_auth
        options["on_data"] = self._on_data
        options["on_rcpt_to"] = self._on_rcpt_to
        options["on_mail_from"] = self._on_mail_from
        from smtpgate import ServerThread, SMTPServer

        self.server: SMTPServer = SMTPServer(**options)
        self.thread: ServerThread = ServerThread(self.server, host=host, port=0, loop_factory=loop_factory)
        self.host = host
        self.port = 0

    # ------------------------------------------------------------- lifecycle

    def start(self) -> SMTPTestServer:
        """Start listening (on a free port: read `port`)."""
        self.thread.start()
        self.port = self.thread.port
        return self

    def stop(self) -> None:
        """Close the server and end its thread."""
        self.thread.stop(timeout=10)

    def __enter__(self) -> SMTPTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``, e.g. for ``smtplib.SMTP(*server.address)``."""
        return self.host, self.port

    @staticmethod
    def client_ssl_context() -> Any:
        """An ``ssl.SSLContext`` for clients that accepts the generated certificate."""
        import ssl

        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    # ------------------------------------------------------------- messages

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self._condition:
            self.messages.clear()
            self._searchables.clear()

    @property
    def last(self) -> CapturedMessage:
        """The newest message (``IndexError`` if none arrived)."""
        with self._condition:
            return self.messages[-1]

    @overload
    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[CapturedMessage]: ...

    @overload
    def wait_for(self, count: str, timeout: float = 5.0) -> CapturedMessage: ...

    def wait_for(self, count: int | str = 1, timeout: float = 5.0) -> list[CapturedMessage] | CapturedMessage:
        """Block until at least ``count`` messages arrived and return them all; or, given
        a search query in Mailpit's syntax (``"to:a@x.test subject:Welcome"``), until a
        message matches it and return the newest that does. Raises ``AssertionError``
        after ``timeout`` seconds (and `smtpgate.inbox.SearchError` for a bad query)."""
        if isinstance(count, str):
            query = self._query(count)
            found: list[CapturedMessage] = []

            def matched() -> bool:
                found[:] = query(self.messages)
                return bool(found)

            with self._condition:
                if not self._condition.wait_for(matched, timeout):
                    got = len(self.messages)
                    raise AssertionError(f"no message matching {count!r} within {timeout} s ({got} received)")
            return found[-1]
        number = count
        with self._condition:
            if not self._condition.wait_for(lambda: len(self.messages) >= number, timeout):
                raise AssertionError(f"expected {number} message(s) within {timeout} s, got {len(self.messages)}")
            return list(self.messages)

    @overload
    async def wait_for_async(self, count: int = 1, timeout: float = 5.0) -> list[CapturedMessage]: ...

    @overload
    async def wait_for_async(self, count: str, timeout: float = 5.0) -> CapturedMessage: ...

    async def wait_for_async(
        self, count: int | str = 1, timeout: float = 5.0
    ) -> list[CapturedMessage] | CapturedMessage:
        """`wait_for` for async tests: waits without blocking the event loop."""
        query = self._query(count) if isinstance(count, str) else None
        deadline = time.monotonic() + timeout
        while True:
            with self._condition:
                if query is not None:
                    found = query(self.messages)
                    if found:
                        return found[-1]
                elif len(self.messages) >= int(count):
                    return list(self.messages)
                got = len(self.messages)
            if time.monotonic() >= deadline:
                if query is not None:
                    raise AssertionError(f"no message matching {count!r} within {timeout} s ({got} received)")
                raise AssertionError(f"expected {count} message(s) within {timeout} s, got {got}")
            await asyncio.sleep(0.01)

    def _query(self, text: str) -> Callable[[list[CapturedMessage]], list[CapturedMessage]]:
        """A filter of captured messages by a search query (parsed now: errors early)."""
        from smtpgate.inbox.parse import parse_message
        from smtpgate.inbox.records import searchable
        from smtpgate.inbox.search import matches, parse_query
        from smtpgate.sinks import MessageInfo

        terms = parse_query(text)

        def select(messages: list[CapturedMessage]) -> list[CapturedMessage]:
            selected = []
            for message in messages:
                item = self._searchables.get(id(message))
                if item is None:
                    info = MessageInfo(message.mail_from, tuple(message.rcpt_to), user=None)
                    created = int(message.received * 1000)
                    item = searchable(parse_message(message.raw), info, len(message.raw), created)
                    self._searchables[id(message)] = item
                if matches(terms, item):
                    selected.append(message)
            return selected

        return select

    # ------------------------------------------------------------- handlers

    async def _on_mail_from(self, address: Any, session: Session) -> None:
        from smtpgate import SMTPError

        if address.address.lower() in self.reject_senders:
            raise SMTPError(550, "Sender refused", enhanced="5.7.1")
        if self._user_mail is not None:
            await _call(self._user_mail, address, session)

    async def _on_rcpt_to(self, address: Any, session: Session) -> None:
        from smtpgate import SMTPError

        if address.address.lower() in self.reject_recipients:
            raise SMTPError(550, "No such user", enhanced="5.1.1")
        if self._user_rcpt is not None:
            await _call(self._user_rcpt, address, session)

    async def _on_auth(self, auth: AuthRequest, session: Session) -> AuthResult | None:
        from smtpgate import AuthResult

        secret = (self.users or {}).get(auth.username)
        if secret is not None and auth.validate_password(secret):
            return AuthResult(user=auth.username)
        return None

    async def _on_data(self, stream: DataStream, session: Session) -> None:
        from smtpgate import SMTPError

        raw = await stream.read()
        if stream.size_exceeded:
            raise SMTPError(552, "Message exceeds fixed maximum message size", enhanced="5.3.4")
        message = _parse(raw)
        envelope = session.envelope
        message.mail_from = envelope.mail_from.address if envelope.mail_from else ""
        message.rcpt_to = [r.address for r in envelope.rcpt_to]
        message.raw = raw
        message.user = session.user
        message.secure = session.secure
        message.received = time.time()
        with self._condition:
            self.messages.append(message)
            self._condition.notify_all()


async def _call(handler: Callable[..., Any], *args: Any) -> None:
    result = handler(*args)
    if asyncio.iscoroutine(result):
        await result


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``smtpgate`` marker."""
    config.addinivalue_line("markers", _MARKER_HELP)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--smtpgate-url``: the running ``smtpgate --http`` of the ``smtpgate_inbox`` fixture."""
    group = parser.getgroup("smtpgate")
    group.addoption(
        "--smtpgate-url",
        default=None,
        metavar="URL",
        help="URL of a running 'smtpgate --http' for the smtpgate_inbox fixture (default: $SMTPGATE_URL)",
    )


@pytest.fixture(scope="session")
def smtpgate_inbox(request: pytest.FixtureRequest) -> InboxClient:
    """A client of the inbox API of an smtpgate running elsewhere (another process, a
    container), from ``--smtpgate-url`` or ``SMTPGATE_URL``."""
    url = request.config.getoption("smtpgate_url", None) or os.environ.get("SMTPGATE_URL", "")
    if not url:
        pytest.fail("smtpgate_inbox needs the URL of a running 'smtpgate --http': --smtpgate-url URL or SMTPGATE_URL")
    from smtpgate.inbox.client import InboxClient

    return InboxClient(url)


@pytest.fixture
def smtpgate_mailbox(smtpgate_inbox: InboxClient) -> Iterator[InboxClient]:
    """`smtpgate_inbox` scoped to a new address ``test-<random>@smtpgate.test`` (read it
    from ``.mailbox``); its messages are deleted after the test."""
    client = smtpgate_inbox.for_mailbox(f"test-{uuid.uuid4().hex[:16]}@smtpgate.test")
    yield client
    client.delete()


@pytest.fixture
def smtpgate_server_factory() -> Iterator[Callable[..., SMTPTestServer]]:
    """``factory(**options)`` starts an `SMTPTestServer`; all stop after the test."""
    started: list[SMTPTestServer] = []

    def factory(**options: Any) -> SMTPTestServer:
        server = SMTPTestServer(**options).start()
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.stop()


@pytest.fixture
def smtpgate_server(
    request: pytest.FixtureRequest, smtpgate_server_factory: Callable[..., SMTPTestServer]
) -> SMTPTestServer:
    """A running `SMTPTestServer`; ``@pytest.mark.smtpgate(...)`` gives options
    (markers closer to the test win: function over class over module)."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("smtpgate"))):
        if marker.args:
            raise pytest.UsageError("@pytest.mark.smtpgate takes keyword options only")
        options.update(marker.kwargs)
    return smtpgate_server_factory(**options)
