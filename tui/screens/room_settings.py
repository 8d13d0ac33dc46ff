"""Room settings (F3): the room's name and topic, ``PUT /rooms/{roomId}/state/m.room.name``
and ``m.room.topic`` (client-server API 11.2.3.1 / 11.2.3.3). A refusal (``M_FORBIDDEN``
without the power level the room asks) is shown in one line and the dialog stays open.
Dismisses with the room ID once saved, None on Escape.
"""

from __future__ import annotations

import nio
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Label

from tui.rooms import RoomError, save_settings
from tui.screens.create_room import RoomDialog


class RoomSettingsScreen(RoomDialog):
    def __init__(self, client: nio.AsyncClient, room: nio.MatrixRoom) -> None:
        super().__init__(client)
        self.room_id = room.room_id
        self.old = {"name": room.name or "", "topic": room.topic or ""}
        self.title_text = room.display_name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="room-settings"):
            yield Label(f"Settings of {self.title_text}", markup=False)
            yield Label("Name")
            yield Input(self.old["name"], placeholder="room name", id="name")
            yield Label("Topic")
            yield Input(self.old["topic"], placeholder="topic", id="topic")
            yield from self.buttons("Save (Enter)")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def changes(self) -> dict[str, str]:
        new = {k: self.query_one(f"#{k}", Input).value.strip() for k in self.old}
        return {k: v for k, v in new.items() if v != self.old[k]}

    async def request(self) -> str:
        changes = self.changes()
        if not changes:
            raise RoomError("nothing changed")
        for what, value in changes.items():
            await save_settings(self.client, self.room_id, {what: value})
            self.old[what] = value  # a refusal of the next one keeps this one done
        return self.room_id
