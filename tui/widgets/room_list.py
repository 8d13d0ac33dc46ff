"""The room list: joined rooms with unread and highlight counts, then invites.

Counts are the server's ``unread_notifications`` (client-server API 13.13.1.3, push
notifications in /sync). The list posts ``RoomList.Selected`` when the user picks a
room; the screen passes the selected room back down with ``show``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

INVITE_PREFIX = "invite:"


@dataclass(frozen=True)
class RoomEntry:
    room_id: str
    name: str
    unread: int = 0
    highlights: int = 0


class RoomList(OptionList):
    """Joined rooms (selectable) and invites (listed, answered in a later version)."""

    class Selected(Message):
        def __init__(self, room_id: str) -> None:
            super().__init__()
            self.room_id = room_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rooms: list[RoomEntry] = []
        self.invites: list[RoomEntry] = []
        self.selected: str | None = None

    def show(self, rooms: list[RoomEntry], invites: list[RoomEntry], selected: str | None) -> None:
        self.rooms, self.invites, self.selected = rooms, invites, selected
        options: list[Option | None] = [
            Option(self._label(r, r.room_id == selected), id=r.room_id) for r in rooms
        ]
        if invites:
            options.append(None)
            options.append(Option(Text("Invites", style="bold"), id="invites", disabled=True))
            options += [
                Option(Text(f"✉ {r.name}", style="italic"), id=INVITE_PREFIX + r.room_id)
                for r in invites
            ]
        self.clear_options()
        self.add_options(options)
        if selected is not None:
            try:
                self.highlighted = self.get_option_index(selected)
            except LookupError:  # OptionDoesNotExist
                pass

    @staticmethod
    def _label(room: RoomEntry, selected: bool) -> Text:
        text = Text(("▌" if selected else " ") + room.name, style="bold" if selected else "")
        if room.unread:
            text.append(f" {room.unread}", style="bold cyan")
        if room.highlights:
            text.append(f" !{room.highlights}", style="bold red")
        return text

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        option_id = event.option.id
        if option_id and not option_id.startswith(INVITE_PREFIX) and option_id != "invites":
            self.post_message(self.Selected(option_id))
