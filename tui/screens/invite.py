"""The invite dialog: Enter or a click on an invite in the room list asks whether to
accept it (join, client-server API 10.x ``POST /join``) or decline it (leave).
Dismisses with True (accept), False (decline) or None (not now)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class InviteScreen(ModalScreen[bool | None]):
    BINDINGS = [  # noqa: RUF012
        Binding("a", "answer(True)", "Accept"),
        Binding("d", "answer(False)", "Decline"),
        Binding("escape", "answer(None)", "Not now"),
    ]

    def __init__(self, room_name: str, inviter: str | None) -> None:
        super().__init__()
        self.room_name = room_name
        self.inviter = inviter

    def compose(self) -> ComposeResult:
        with Vertical(id="invite"):
            by = f" from {self.inviter}" if self.inviter else ""
            yield Static(f"An invite to {self.room_name}{by}.", markup=False)
            with Horizontal(id="invite-buttons"):
                yield Button("Accept (a)", id="accept", variant="primary")
                yield Button("Decline (d)", id="decline", variant="error")
                yield Button("Not now (Esc)", id="cancel")

    @on(Button.Pressed)
    def on_pressed(self, event: Button.Pressed) -> None:
        self.dismiss({"accept": True, "decline": False}.get(event.button.id or ""))

    def action_answer(self, accept: bool | None) -> None:
        self.dismiss(accept)
