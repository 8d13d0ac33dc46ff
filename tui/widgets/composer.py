"""The composer: one line of input; Enter sends. ``/me text`` is an emote (client-server
API 11.2.1.7.3 ``m.emote``); other commands come in a later version."""

from __future__ import annotations

from typing import Any

from textual.message import Message
from textual.widgets import Input


def parse_input(text: str) -> dict[str, Any] | None:
    """The ``m.room.message`` content for what was typed, or None for nothing to send.

    Raises ValueError for an unknown command.
    """
    if not text.strip():
        return None
    if text.startswith("/me ") or text == "/me":
        body = text[4:].strip()
        return {"msgtype": "m.emote", "body": body} if body else None
    if text.startswith("//"):  # an escaped slash: send the text as typed, minus one
        return {"msgtype": "m.text", "body": text[1:]}
    if text.startswith("/"):
        raise ValueError(f"unknown command {text.split()[0]} (see F1 for help)")
    return {"msgtype": "m.text", "body": text}


class Composer(Input):
    class Send(Message):
        def __init__(self, content: dict[str, Any]) -> None:
            super().__init__()
            self.content = content

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="Message (Enter sends, /me acts)", id=id)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            content = parse_input(event.value)
        except ValueError as e:
            self.notify(str(e), severity="warning")
            return
        self.value = ""
        if content is not None:
            self.post_message(self.Send(content))
