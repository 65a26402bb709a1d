"""The HTML rewriter: cid: links to parts, remote content held back, scripts and handlers gone."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from smtpgate.inbox.htmlview import BLANK_IMAGE, prepare_html

PARTS = {"logo@x": "../api/v1/message/M1/part/2"}


def rewrite(html: str, allow_remote: bool = False) -> str:
    return prepare_html(html, PARTS.get, allow_remote).html


def test_cid_references_point_at_the_part_in_src_background_css_and_links() -> None:
    html = (
        '<img src="cid:logo@x"><td background="cid:logo@x">'
        '<div style="background:url(cid:logo@x)"></div><a href="cid:logo@x">logo</a>'
    )
    out = rewrite(html)
    assert out.count("../api/v1/message/M1/part/2") == 4
    assert "cid:" not in out


def test_cid_is_matched_with_angle_brackets_or_url_escapes_and_unknown_ones_are_dropped() -> None:
    assert 'src="../api/v1/message/M1/part/2"' in rewrite('<img src="cid:%3Clogo@x%3E">')
    assert rewrite('<img src="cid:missing@x">') == f'<img src="{BLANK_IMAGE}">'


def test_remote_urls_are_held_back_and_reported() -> None:
    html = (
        '<img src="https://tracker.test/p.gif"><img srcset="//cdn.test/a.png 1x, cid:logo@x 2x">'
        '<link rel="stylesheet" href="http://fonts.test/css"><p style="background: url( \'http://bg.test/x\' )">'
        "<style>@import 'https://imp.test/a.css'; h1 { background: url(HTTPS://Up.test/y) }</style>"
    )
    document = prepare_html(html, PARTS.get, allow_remote=False)
    assert "tracker.test" not in document.html
    assert "cdn.test" not in document.html and "part/2 2x" in document.html
    assert "fonts.test" not in document.html and "<link" not in document.html
    assert "bg.test" not in document.html and "imp.test" not in document.html and "Up.test" not in document.html
    assert document.remote_hosts == ["tracker.test", "cdn.test", "fonts.test", "bg.test", "imp.test", "up.test"]


def test_remote_urls_stay_when_the_reader_allows_them() -> None:
    html = '<img src="https://tracker.test/p.gif"><link rel="stylesheet" href="http://fonts.test/css">'
    document = prepare_html(html, PARTS.get, allow_remote=True)
    assert document.html == html
    assert len(document.remote) == 2


def test_scripts_handlers_base_refresh_and_prefetch_are_removed() -> None:
    html = (
        "<head><base href='https://evil.test/'><meta http-equiv='refresh' content='0;url=https://evil.test'>"
        "<link rel=dns-prefetch href='//evil.test'><script>alert(1)</script><script src=x.js></script></head>"
        "<body onload=alert(2)><img src=x onerror=alert(3)><a href='javascript:alert(4)' ping='https://evil.test'>x</a>"
        "<svg><a xlink:href='javascript:alert(5)'></a></svg><form action='https://evil.test'><button formaction=x>"
    )
    out = rewrite(html, allow_remote=True)
    for word in ("alert", "evil.test", "<script", "<base", "refresh", "onerror", "onload", "ping"):
        assert word not in out.lower(), word


def test_links_open_outside_the_frame_without_a_referrer() -> None:
    out = rewrite('<a href="https://example.test/page" target="_self" rel="opener">go</a>')
    assert out == '<a href="https://example.test/page" target="_blank" rel="noopener noreferrer">go</a>'


def test_outside_a_frame_links_keep_their_target() -> None:
    html = '<a href="https://example.test/page" target="_self">go</a>'
    assert prepare_html(html, PARTS.get, new_tab_links=False).html == html


def test_relative_urls_and_other_schemes_load_nothing() -> None:
    out = rewrite('<img src="../api/v1/messages"><img src="file:///etc/passwd"><video poster="ftp://x/y">')
    assert "api/v1/messages" not in out and "file:" not in out and "ftp:" not in out


def test_frames_and_plugins_never_get_a_source() -> None:
    out = rewrite(
        '<iframe src="cid:logo@x"></iframe><embed src="https://x.test/a"><object data="data:text/html,hi">', True
    )
    assert "src=" not in out and "data=" not in out


def test_css_escapes_and_whitespace_do_not_hide_a_remote_url() -> None:
    out = rewrite("<div style=\"background:url('\\68 ttps://hidden.test/a')\"></div><img src=' \thttps://ws.test/a'>")
    assert "hidden.test" not in out and "ws.test" not in out


def test_text_comments_entities_and_doctype_pass_through() -> None:
    html = "<!DOCTYPE html><p class=x>Fish &amp; chips &#169; <b>bold</b></p><!-- [if mso]>hidden<![endif] -->"
    assert rewrite(html) == "<!DOCTYPE html><p class=x>Fish &amp; chips &#169; <b>bold</b></p>"


URLISH = st.sampled_from(
    ["https://r.test/a", "//r.test/b", "HTTP://r.test/c", " https://r.test/d", "cid:logo@x", "data:image/png;base64,AA"]
)
FRAGMENT = st.one_of(
    st.text(max_size=20),
    st.builds(lambda u: f'<img src="{u}">', URLISH),
    st.builds(lambda u: f"<div style=\"background:url('{u}')\">", URLISH),
    st.builds(lambda u: f"<style>a{{background:url({u})}}</style>", URLISH),
    st.builds(lambda u: f'<link rel="stylesheet" href="{u}">', URLISH),
    st.sampled_from(["<script>x()</script>", "<p onclick=x()>", "</p>", "<b>", "<!--c-->", "&amp;", "<", ">", '"']),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(FRAGMENT, max_size=12))
def test_no_remote_url_survives_and_nothing_crashes(fragments: list[str]) -> None:
    html = "".join(fragments)
    out = rewrite(html)
    assert not re.search(r"(?i)src=\"\s*(https?:)?//r\.test", out)
    # A <link> (not part of a longer, unknown tag name such as "<a<link") never keeps a remote href.
    assert not re.search(r"(?i)(?<![^\s>])<link[^>]*href=\"\s*(https?:)?//r\.test", out)
    assert "url('https://r.test" not in out and 'url("https://r.test' not in out
    assert "<script" not in out.lower() or "<script" in "".join(f for f in fragments if not f.startswith("<"))
    assert "onclick" not in out


def test_attribute_names_are_compared_in_lower_case_like_a_browser() -> None:
    out = rewrite('<img ONerror="x()" SRC="https://r.test/a"><META HTTP-EQUIV="Refresh" content="0">')
    assert "onerror" not in out.lower() and "r.test" not in out and "meta" not in out.lower()


def test_style_text_means_the_same_in_html_and_inside_svg() -> None:
    # Inside <svg> a browser decodes character references in <style>: the rewrite sees that.
    out = rewrite('<svg><style>@import "htt&#x70;s://r.test/x"; a::after { content: "&lt;b&gt; & c" }</style></svg>')
    assert "r.test" not in out
    assert 'content: "\\3c b> \\26  c"' in out  # "<" and "&" as CSS escapes: one reading either way
