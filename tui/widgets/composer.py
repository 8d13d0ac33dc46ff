"""The composer: multi-line input. Enter sends; shift+Enter, alt+Enter or ctrl+J starts a
new line (a paste keeps its lines).

``/me text`` is an emote (client-server API 11.2.1.7.3 ``m.emote``); ``/join``,
``/invite``, ``/leave``, ``/topic`` and ``/nick`` are commands the screen runs
(tui/commands.py); ``//text`` sends ``/text`` as typed. Markdown-style formatting
becomes ``formatted_body`` (tui/formatting.py).

Replying and editing are modes (``reply_to`` / ``editing``) the timeline's cursor sets;
Up in an empty composer edits one's last message; Escape leaves the mode. The screen
turns ``Send`` into a rich reply (11.19 ``m.in_reply_to``) or a replacement (11.37
``m.replace``). While text is being written it posts ``Typing`` (11.5 typing
notifications), at most every ``TYPING_EVERY_S``, and ``Typing(False)`` once cleared.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea

from tui.commands import Command, parse_command
from tui.formatting import HTML_FORMAT, markdown_to_html
from tui.timeline_model import Entry

TYPING_EVERY_S = 20.0  # the typing notice lasts 30 s on the server: renewed before
NEWLINE_KEYS = ("shift+enter", "alt+enter", "ctrl+j")


def parse_input(text: str) -> dict[str, Any] | Command | None:
    """The ``m.room.message`` content for what was typed, a command to run, or None for
    nothing to send.

    Raises ValueError for an unknown command or a command without its argument.
    """
    if not text.strip():
        return None
    if text.startswith("/me ") or text == "/me":
        body = text[4:].strip()
        return formatted({"msgtype": "m.emote", "body": body}) if body else None
    if text.startswith("//"):  # an escaped slash: send the text as typed, minus one
        return formatted({"msgtype": "m.text", "body": text[1:]})
    if text.startswith("/"):
        return parse_command(text)
    return formatted({"msgtype": "m.text", "body": text})


def formatted(content: dict[str, Any]) -> dict[str, Any]:
    """``content`` with ``format`` and ``formatted_body`` when its body has formatting."""
    html = markdown_to_html(content["body"])
    if html is not None:
        content = {**content, "format": HTML_FORMAT, "formatted_body": html}
    return content


class Composer(TextArea):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "up_or_edit", "Up / edit last", show=False),
        Binding("escape", "leave_mode", "Cancel reply or edit", show=False),
    ]
    DEFAULT_CSS = """
    Composer {
        height: auto;
        min-height: 3;
        max-height: 10;
    }
    """

    class Send(Message):
        def __init__(
            self,
            content: dict[str, Any],
            reply_to: Entry | None = None,
            editing: Entry | None = None,
        ) -> None:
            super().__init__()
            self.content = content
            self.reply_to = reply_to
            self.editing = editing

    class Run(Message):
        def __init__(self, command: Command) -> None:
            super().__init__()
            self.command = command

    class ModeChanged(Message):
        """Replying or editing started or ended: the screen shows it above."""

    class EditLast(Message):
        """Up in an empty composer: edit one's last message."""

    class Typing(Message):
        def __init__(self, typing: bool) -> None:
            super().__init__()
            self.typing = typing

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            id=id,
            soft_wrap=True,
            show_line_numbers=False,
            tab_behavior="focus",
            compact=True,
            placeholder="Message (Enter sends, shift/alt+Enter new line, F1 help)",
        )
        self.reply_to: Entry | None = None
        self.editing: Entry | None = None
        self._typing_sent = 0.0  # monotonic time of the last Typing(True)

    @property
    def value(self) -> str:
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    # -- modes ------------------------------------------------------------------------

    def start_reply(self, entry: Entry) -> None:
        self.reply_to, self.editing = entry, None
        self.post_message(self.ModeChanged())
        self.focus()

    def start_edit(self, entry: Entry) -> None:
        body = entry.content.get("body")
        self.editing, self.reply_to = entry, None
        self.value = body if isinstance(body, str) else ""
        self.post_message(self.ModeChanged())
        self.focus()

    def leave_mode(self) -> None:
        if self.reply_to is None and self.editing is None:
            return
        if self.editing is not None:
            self.value = ""
        self.reply_to = self.editing = None
        self.post_message(self.ModeChanged())

    def action_leave_mode(self) -> None:
        if self.reply_to is None and self.editing is None:
            self.screen.focus_next()
        self.leave_mode()

    def action_up_or_edit(self) -> None:
        if not self.text and self.editing is None:
            self.post_message(self.EditLast())
        else:
            self.action_cursor_up()

    # -- keys -------------------------------------------------------------------------

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
            return
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        now = time.monotonic()
        if not self.text.strip() or self.text.startswith("/"):
            if self._typing_sent:
                self._typing_sent = 0.0
                self.post_message(self.Typing(False))
        elif now - self._typing_sent > TYPING_EVERY_S:
            self._typing_sent = now
            self.post_message(self.Typing(True))

    def submit(self) -> None:
        text = self.text
        try:
            parsed = parse_input(text)
        except ValueError as e:
            self.notify(str(e), severity="warning")
            return
        if parsed is None:
            return
        reply_to, editing = self.reply_to, self.editing
        self.reply_to = self.editing = None
        self.load_text("")
        if reply_to is not None or editing is not None:
            self.post_message(self.ModeChanged())
        if isinstance(parsed, Command):
            self.post_message(self.Run(parsed))
        else:
            self.post_message(self.Send(parsed, reply_to=reply_to, editing=editing))
