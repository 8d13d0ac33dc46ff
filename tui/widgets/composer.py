"""The composer: one line of input; Enter sends.

``/me text`` is an emote (client-server API 11.2.1.7.3 ``m.emote``); ``/join``,
``/invite``, ``/leave``, ``/topic`` and ``/nick`` are commands the screen runs
(tui/commands.py); ``//text`` sends ``/text`` as typed.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message
from textual.widgets import Input

from tui.commands import Command, parse_command


def parse_input(text: str) -> dict[str, Any] | Command | None:
    """The ``m.room.message`` content for what was typed, a command to run, or None for
    nothing to send.

    Raises ValueError for an unknown command or a command without its argument.
    """
    if not text.strip():
        return None
    if text.startswith("/me ") or text == "/me":
        body = text[4:].strip()
        return {"msgtype": "m.emote", "body": body} if body else None
    if text.startswith("//"):  # an escaped slash: send the text as typed, minus one
        return {"msgtype": "m.text", "body": text[1:]}
    if text.startswith("/"):
        return parse_command(text)
    return {"msgtype": "m.text", "body": text}


class Composer(Input):
    class Send(Message):
        def __init__(self, content: dict[str, Any]) -> None:
            super().__init__()
            self.content = content

    class Run(Message):
        def __init__(self, command: Command) -> None:
            super().__init__()
            self.command = command

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="Message (Enter sends, /me acts, F1 lists commands)", id=id)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            parsed = parse_input(event.value)
        except ValueError as e:
            self.notify(str(e), severity="warning")
            return
        self.value = ""
        if isinstance(parsed, Command):
            self.post_message(self.Run(parsed))
        elif parsed is not None:
            self.post_message(self.Send(parsed))
