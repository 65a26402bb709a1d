"""The linear HTML tokenizer: what a browser sees as tags, attributes, comments and raw text."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from smtpgate.inbox.htmltokens import Comment, Doctype, EndTag, RawText, StartTag, Text, Token, tokenize
from smtpgate.inbox.htmlview import prepare_html


def tokens(text: str) -> list[Token]:
    return list(tokenize(text))


def raw(token: Token) -> str:
    return token.text if isinstance(token, (Text, RawText)) else token.raw


def test_attributes_quoted_unquoted_missing_and_repeated() -> None:
    [tag] = tokens("<IMG Src=a.png alt='it''s' title=\"x>y\" hidden data-x= src=\"second\">")
    assert isinstance(tag, StartTag)
    assert tag.lname == "img"
    assert tag.attrs == [
        ("Src", "a.png"),
        ("alt", "it"),
        ("'s'", None),
        ("title", "x>y"),
        ("hidden", None),
        ("data-x", 'src="second"'),
    ]


def test_character_references_in_values_are_decoded() -> None:
    [tag] = tokens('<img src="&#104;ttps&colon;//x.test/&amp;a">')
    assert isinstance(tag, StartTag)
    assert tag.attrs == [("src", "https://x.test/&a")]


def test_slashes_separate_attributes_and_close_tags() -> None:
    [tag] = tokens("<img/src=x/alt=y/>")
    assert isinstance(tag, StartTag)
    assert tag.attrs == [("src", "x/alt=y/")]  # an unquoted value runs to whitespace or ">"
    [tag] = tokens('<br/class="a"/>')
    assert isinstance(tag, StartTag) and tag.self_closing and tag.attrs == [("class", "a")]


def test_an_attribute_name_may_start_with_an_equals_sign() -> None:
    [tag] = tokens("<a =x=1>")
    assert isinstance(tag, StartTag) and tag.attrs == [("=x", "1")]


def test_comments_end_at_the_first_close_including_the_abrupt_forms() -> None:
    assert [type(t).__name__ for t in tokens("<!--a-->b<!-->c<!--->d<!--e--!>f")] == [
        "Comment", "Text", "Comment", "Text", "Comment", "Text", "Comment", "Text",
    ]  # fmt: skip
    assert [raw(t) for t in tokens("<!--a-->b<!-->c") if isinstance(t, Text)] == ["b", "c"]


def test_bogus_comments_doctype_and_stray_less_than_signs() -> None:
    kinds = [(type(t).__name__, raw(t)) for t in tokens("<!DOCTYPE html><?xml x?>< 1 </ x></>2<![CDATA[y]]>")]
    assert kinds == [
        ("Doctype", "<!DOCTYPE html>"),
        ("Comment", "<?xml x?>"),
        ("Text", "<"),
        ("Text", " 1 "),
        ("Comment", "</ x>"),
        ("Text", "2"),
        ("Comment", "<![CDATA[y]]>"),
    ]


def test_script_and_style_content_is_raw_text_up_to_their_end_tag() -> None:
    result = tokens("<script>if (a < b) '</p>'</SCRIPT ><style>p{}</style/>")
    assert [type(t).__name__ for t in result] == ["StartTag", "RawText", "EndTag", "StartTag", "RawText", "EndTag"]
    assert raw(result[1]) == "if (a < b) '</p>'"


def test_an_unclosed_tag_swallows_the_rest_like_a_browser() -> None:
    assert [raw(t) for t in tokens('a<img src="x>b')] == ["a"]
    assert [raw(t) for t in tokens("a<img src=x")] == ["a"]


def test_end_tags_may_carry_attributes_with_quotes() -> None:
    [tag, text] = tokens('</a title=">">x')
    assert isinstance(tag, EndTag) and tag.lname == "a" and raw(text) == "x"


def test_hostile_inputs_that_stall_html_parser_are_linear_here() -> None:
    # Each of these keeps Python's html.parser busy for minutes at this size.
    for unit, expected in (("<!--", ""), ("<a\n", ""), ('<a href="', ""), ("<![", ""), ("</a", "")):
        assert prepare_html(unit * 100_000, lambda _: None).html == expected


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/!-?=\"' \nabscriptyle&;#x")), max_size=80))
def test_tokens_reproduce_the_input_up_to_a_dropped_unclosed_tag(text: str) -> None:
    assume("</>" not in text)
    joined = "".join(raw(token) for token in tokenize(text))
    assert text.startswith(joined)
    assert joined == text or text[len(joined)] == "<"
    assert all(not isinstance(t, (Comment, Doctype)) or raw(t).startswith("<") for t in tokenize(text))
