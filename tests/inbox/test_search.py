"""Mailpit's search syntax: parsing, errors, and the SQL it makes (hypothesis too)."""

from __future__ import annotations

import sqlite3
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpgate.inbox.schema import migrate
from smtpgate.inbox.search import SearchError, Term, parse_query, render_query, to_sql


def test_terms() -> None:
    assert parse_query('hello -from:bob "two words" subject:"a b" !is:read has:attachment tag:x') == [
        Term("", "hello"),
        Term("from", "bob", negated=True),
        Term("", "two words"),
        Term("subject", "a b"),
        Term("is:read", "", negated=True),
        Term("has:attachment", ""),
        Term("tag", "x"),
    ]
    assert parse_query("  ") == []
    assert parse_query("unknown:prefix") == [Term("", "unknown:prefix")]
    assert parse_query("-") == [Term("", "-")]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ('subject:"open', "unterminated quote at position 9"),
        ("is:sometimes", "unknown is: value 'sometimes'"),
        ("has:wings", "unknown has: value 'wings'"),
        ("from:", "from: needs a value"),
        ("after:soon", "invalid date 'soon'"),
        ("larger:huge", "invalid size 'huge'"),
        ("x " * 60, "too many search terms"),
        ("x" * 3000, "query too long"),
    ],
)
def test_errors_name_the_problem(query: str, problem: str) -> None:
    with pytest.raises(SearchError) as caught:
        parse_query(query)
    assert problem in str(caught.value)


def test_dates_and_sizes() -> None:
    sql, params = to_sql(parse_query("after:2024-05-01 before:2024-05-02T10:30+02:00 larger:1.5k"))
    assert params == [1714521600000, 1714638600000, 1536]
    assert "m.created >= ?" in sql and "m.created < ?" in sql


def test_values_never_become_sql() -> None:
    sql, params = to_sql(parse_query('subject:"\'; DROP TABLE messages; --" 100%_off'))
    assert "DROP" not in sql and sql.count("?") == len(params)
    assert params[1] == '"100%_off"'


_text = st.text(alphabet=string.ascii_letters + string.digits + "éü@.+_%'\\-!:", min_size=1, max_size=12)
_term = st.one_of(
    st.builds(Term, st.just(""), _text, st.booleans()),
    st.builds(
        Term,
        st.sampled_from(["from", "to", "cc", "bcc", "subject", "message-id", "tag", "reply-to"]),
        _text,
        st.booleans(),
    ),
    st.builds(
        Term, st.sampled_from(["is:read", "is:unread", "has:attachment", "has:inline"]), st.just(""), st.booleans()
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_term, max_size=8))
def test_render_then_parse_round_trips(terms: list[Term]) -> None:
    terms = [t for t in terms if t.field or t.value.strip() not in ("", "-", "!")]
    assert parse_query(render_query(terms)) == terms


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_fails_clearly(query: str) -> None:
    try:
        terms = parse_query(query)
    except SearchError as error:
        assert str(error)
        return
    sql, params = to_sql(terms)
    assert sql.count("?") == len(params)


@pytest.fixture(scope="module")
def database() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    migrate(connection, ":memory:")
    return connection


@settings(max_examples=200, deadline=None)
@given(st.lists(_term, max_size=6))
def test_generated_sql_runs(database: sqlite3.Connection, terms: list[Term]) -> None:
    sql, params = to_sql(terms)
    database.execute(f"SELECT COUNT(*) FROM messages m WHERE {sql}", params).fetchone()


# ---------------------------------------------------------------- matches() agrees with SQL

_words = st.sampled_from(["alpha", "Beta", "gam", "xy", "zeta one", "q"])
_address = st.builds(
    lambda local, tag: f"{local}{'+' + tag if tag else ''}@ex.test",
    st.sampled_from(["ann", "bob", "xy"]),
    st.sampled_from(["", "news", "Beta"]),
)
_mail = st.fixed_dictionaries(
    {
        "subject": st.lists(_words, max_size=3).map(" ".join),
        "from": _address,
        "to": st.lists(_address, min_size=1, max_size=2),
        "body": st.lists(_words, max_size=4).map(" ".join),
        "attach": st.booleans(),
    }
)
_query_term = st.one_of(
    st.builds(Term, st.just(""), _words, st.booleans()),
    st.builds(Term, st.sampled_from(["from", "to", "subject", "tag", "addressed"]), _words, st.booleans()),
    st.builds(
        Term, st.sampled_from(["is:read", "is:unread", "has:attachment", "is:tagged"]), st.just(""), st.booleans()
    ),
)


def _raw(mail: dict[str, object]) -> bytes:
    to = ", ".join(mail["to"])  # type: ignore[arg-type]
    head = f"From: {mail['from']}\r\nTo: {to}\r\nSubject: {mail['subject']}\r\n"
    if not mail["attach"]:
        return (head + f"\r\n{mail['body']}\r\n").encode()
    return (
        head + "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        f"{mail['body']}\r\n--b\r\nContent-Type: application/pdf\r\n"
        "Content-Disposition: attachment; filename=xy.pdf\r\n\r\n"
        "%PDF\r\n--b--\r\n"
    ).encode()


@settings(max_examples=40, deadline=None)
@given(st.lists(_mail, min_size=1, max_size=5), st.lists(st.lists(_query_term, min_size=1, max_size=3), max_size=4))
def test_matches_agrees_with_the_sql_search(mails: list[dict[str, object]], queries: list[list[Term]]) -> None:
    import asyncio
    import tempfile

    from smtpgate.inbox import InboxStore
    from smtpgate.inbox.parse import parse_message
    from smtpgate.inbox.records import searchable
    from smtpgate.inbox.search import matches
    from smtpgate.sinks import MessageInfo

    async def scenario(folder: str) -> None:
        async with InboxStore(f"{folder}/i.db") as store:
            items = {}
            for number, mail in enumerate(mails):
                raw = _raw(mail)
                info = MessageInfo("s@ex.test", tuple(mail["to"]), received=1_700_000_000 + number)  # type: ignore[arg-type]
                message_id = await store.add_bytes(raw, info)
                if number % 2:
                    await store.set_read([message_id], True)
                created = int(info.received * 1000)
                items[message_id] = searchable(parse_message(raw), info, len(raw), created, read=bool(number % 2))
            for terms in queries:
                page = await store.list_messages(query=render_query(terms), limit=100)
                found = {m["ID"] for m in page["messages"]}
                expected = {key for key, item in items.items() if matches(terms, item)}
                assert found == expected, render_query(terms)

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(scenario(folder))
