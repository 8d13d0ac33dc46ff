"""The help screen: every key binding of the client."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

BINDINGS_HELP = (
    ("ctrl+q", "quit"),
    ("ctrl+n / ctrl+p", "next / previous room"),
    ("Enter", "send the message (in the composer); open the room (in the list)"),
    ("/me text", "send an emote"),
    ("/join #alias:server", "join a room (or !room_id:server)"),
    ("/invite @user:server", "invite someone to the room shown"),
    ("/leave", "leave the room shown"),
    ("/topic text", "set the topic of the room shown"),
    ("/nick name", "set your display name"),
    ("//text", "send text that starts with a slash"),
    ("a / d", "accept / decline the invite highlighted in the room list"),
    ("Enter on an invite", "ask: accept, decline or not now"),
    ("PageUp / Home", "scroll up; at the top, load older messages"),
    ("Tab / shift+Tab", "move between the room list, timeline and composer"),
    ("F1 or ?", "this help"),
    ("Escape", "close this help"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [  # noqa: RUF012
        Binding("escape,q,f1,question_mark", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static("[b]Croft: key bindings[/b]\n")
            for key, what in BINDINGS_HELP:
                yield Static(f"[b]{key:<18}[/b] {what}", classes="binding", markup=True)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
