"""Formatted message bodies: HTML to terminal text, and a Markdown subset to HTML.

Client-server API 11.2.1.7.1 "m.room.message msgtypes", ``format:
org.matrix.custom.html`` with ``formatted_body``: the recommended tags (b, strong, i,
em, u, del, s, code, pre, a, blockquote, p, br, ul, ol, li, h1-h6, span, font, hr,
sub, sup). Anything else is read as its text. ``mx-reply`` (the rich reply fallback,
11.19.1) is dropped: the reply is shown from the event it points to.

What the composer sends (the same section): ``body`` is what was typed; when it uses
``**bold**``, ``*italic*`` / ``_italic_``, ```` `code` ````, ``~~struck~~``, fenced
code blocks or ``[text](url)`` links, ``formatted_body`` carries the HTML.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from rich.style import Style
from rich.text import Text

HTML_FORMAT = "org.matrix.custom.html"

_INLINE = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "del": "strike",
    "s": "strike",
    "strike": "strike",
    "code": "reverse",
    "sub": "dim",
    "sup": "dim",
}
_BLOCK = {"p", "div", "blockquote", "pre", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6"}
_SCHEMES = ("http://", "https://", "mailto:", "matrix:", "mxc://")


class _ToText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = Text()
        self.styles: list[tuple[str, Style]] = []  # open tag -> its style
        self.lists: list[list[int]] = []  # open lists: [next number] or [] (bullets)
        self.skip = 0  # inside mx-reply
        self.pre = 0
        self.quote = 0

    def _style(self) -> Style:
        style = Style()
        for _, s in self.styles:
            style += s
        return style

    def _newline(self) -> None:
        if self.text.plain and not self.text.plain.endswith("\n"):
            self.text.append("\n")
            if self.quote:
                self.text.append("▎ " * self.quote, "dim")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "mx-reply":
            self.skip += 1
        if self.skip:
            return
        if tag == "br":
            self.text.append("\n")
            if self.quote:
                self.text.append("▎ " * self.quote, "dim")
            return
        if tag == "hr":
            self._newline()
            self.text.append("─" * 20, "dim")
            self._newline()
            return
        if tag in _BLOCK or tag == "li":
            self._newline()
        if tag == "blockquote":
            self.quote += 1
            self.text.append("▎ ", "dim")
        elif tag == "pre":
            self.pre += 1
        elif tag in ("ul", "ol"):
            self.lists.append([1] if tag == "ol" else [])
        elif tag == "li":
            indent = "  " * max(0, len(self.lists) - 1)
            if self.lists and self.lists[-1]:
                self.text.append(f"{indent}{self.lists[-1][0]}. ")
                self.lists[-1][0] += 1
            else:
                self.text.append(f"{indent}• ")
        style = None
        if tag == "code" and self.pre:
            style = Style(color="green")
        elif tag in _INLINE:
            style = Style.parse(_INLINE[tag])
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            style = Style(bold=True, underline=tag == "h1")
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            style = Style(underline=True, color="cyan")
            if href.startswith(_SCHEMES):
                style += Style(link=href)
        if style is not None:
            self.styles.append((tag, style))

    def handle_endtag(self, tag: str) -> None:
        if tag == "mx-reply":
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        for i in range(len(self.styles) - 1, -1, -1):
            if self.styles[i][0] == tag:
                del self.styles[i:]
                break
        if tag == "blockquote":
            self.quote = max(0, self.quote - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        if tag in _BLOCK:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
            if self.text.plain.endswith(("\n", "▎ ")) or not self.text.plain:
                data = data.lstrip()
        if data:
            style = self._style()
            if self.quote and "\n" in data:
                data = data.replace("\n", "\n" + "▎ " * self.quote)
            self.text.append(data, style if style else None)


def html_to_text(formatted: str) -> Text:
    """The terminal rendering of a ``formatted_body``."""
    parser = _ToText()
    try:
        parser.feed(formatted)
        parser.close()
    except Exception:  # HTMLParser on hostile input: fall back to plain text
        return Text(re.sub(r"<[^>]*>", "", formatted))
    text = parser.text
    text.rstrip()
    while text.plain.endswith("\n"):
        text.right_crop(1)
    return text


def strip_reply_fallback(body: str) -> str:
    """``body`` without the ``> `` quoted lines a reply fallback starts with (11.19.1)."""
    if not body.startswith("> "):
        return body
    lines = body.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i < len(lines) and lines[i] == "":
        i += 1
    return "\n".join(lines[i:])


# -- the composer's Markdown subset ----------------------------------------------------

_FENCE = re.compile(r"^```[^\n]*\n(.*?)\n?```\s*$", re.S | re.M)
_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_ITALIC = re.compile(r"(?<![\w*])[*_](?=\S)([^*_\n]+?)(?<=\S)[*_](?![\w*])")


def markdown_to_html(body: str) -> str | None:
    """The ``formatted_body`` for ``body``, or None when it has no formatting."""
    parts: list[str] = []
    at = 0
    for fence in _FENCE.finditer(body):
        parts.append(_inline(body[at : fence.start()]))
        parts.append(f"<pre><code>{html.escape(fence.group(1), quote=False)}</code></pre>")
        at = fence.end()
    parts.append(_inline(body[at:]))
    out = "".join(parts).strip("\n").replace("\n", "<br>")
    out = out.replace("</pre><br>", "</pre>").replace("<br><pre>", "<pre>")
    return None if out == html.escape(body, quote=False).replace("\n", "<br>") else out


def _inline(text: str) -> str:
    codes: list[str] = []

    def keep_code(m: re.Match[str]) -> str:
        codes.append(f"<code>{html.escape(m.group(1), quote=False)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _CODE.sub(keep_code, text)
    text = html.escape(text, quote=False)
    text = _LINK.sub(lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _STRIKE.sub(r"<del>\1</del>", text)
    text = _ITALIC.sub(r"<em>\1</em>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)
