"""tui/formatting.py: formatted bodies to terminal text, and the composer's Markdown."""

from __future__ import annotations

import pytest

from tui.formatting import html_to_text, markdown_to_html, strip_reply_fallback
from tui.widgets.composer import parse_input

HTML_CASES = [
    ("<b>bold</b> and <em>it</em>", "bold and it", [(0, 4, "bold"), (9, 11, "italic")]),
    ("<mx-reply><blockquote>quoted</blockquote></mx-reply>answer", "answer", []),
    ("<p>one</p><p>two</p>", "one\ntwo", []),
    ("<ul><li>a</li><li>b</li></ul>", "• a\n• b", []),
    ("<ol><li>a</li><li>b</li></ol>after", "1. a\n2. b\nafter", []),
    ("<blockquote>q1<br>q2</blockquote>after", "▎ q1\n▎ q2\nafter", [(0, 2, "dim"), (5, 7, "dim")]),
    ("<pre><code>a\n  b</code></pre>", "a\n  b", [(0, 5, "green")]),
    ("x <del>gone</del>", "x gone", [(2, 6, "strike")]),
    ("<b>never closed", "never closed", [(0, 12, "bold")]),
    ("a &amp; b &lt;c&gt;", "a & b <c>", []),
    ("<script>alert(1)</script>", "alert(1)", []),
]


@pytest.mark.parametrize(("html", "plain", "spans"), HTML_CASES)
def test_html_to_text(html: str, plain: str, spans: list[tuple[int, int, str]]) -> None:
    text = html_to_text(html)
    assert text.plain == plain
    assert [(s.start, s.end, str(s.style)) for s in text.spans] == spans


def test_links_keep_only_safe_schemes() -> None:
    text = html_to_text('<a href="https://x.org">ok</a> <a href="javascript:bad()">no</a>')
    styles = [s.style for s in text.spans]
    assert styles[0].link == "https://x.org"  # type: ignore[union-attr]
    assert styles[1].link is None  # type: ignore[union-attr]


MARKDOWN_CASES = [
    ("plain words", None),
    ("snake_case_name and 2*3*4", None),
    ("**bold**", "<strong>bold</strong>"),
    ("*it* and _it_", "<em>it</em> and <em>it</em>"),
    ("`a*b*c` ~~old~~", "<code>a*b*c</code> <del>old</del>"),
    ("see [the site](https://x.org/a_b)", 'see <a href="https://x.org/a_b">the site</a>'),
    ("**a** <b>", "<strong>a</strong> &lt;b&gt;"),
    ("a\n```\nx < 1\n```\nb", "a<pre><code>x &lt; 1</code></pre>b"),
    ("line one\n**line two**", "line one<br><strong>line two</strong>"),
]


@pytest.mark.parametrize(("body", "html"), MARKDOWN_CASES)
def test_markdown_to_html(body: str, html: str | None) -> None:
    assert markdown_to_html(body) == html


def test_composer_sends_formatting_only_when_there_is_some() -> None:
    assert parse_input("hello") == {"msgtype": "m.text", "body": "hello"}
    assert parse_input("/me **waves**") == {
        "msgtype": "m.emote",
        "body": "**waves**",
        "format": "org.matrix.custom.html",
        "formatted_body": "<strong>waves</strong>",
    }
    assert parse_input("two\nlines") == {"msgtype": "m.text", "body": "two\nlines"}


def test_strip_reply_fallback() -> None:
    assert strip_reply_fallback("> <@a:x> hi\n> more\n\nanswer") == "answer"
    assert strip_reply_fallback("no quote") == "no quote"
    assert strip_reply_fallback("> only a quote") == ""
