"""The room list: joined rooms with unread and highlight counts, then invites.

Counts are the server's ``unread_notifications`` (client-server API 13.13.1.3, push
notifications in /sync). The list posts ``RoomList.Selected`` when the user picks a
room, ``RoomList.InviteAnswer`` for ``a`` (accept: join) or ``d`` (decline: leave)
on an invite, and ``RoomList.InviteOpened`` for Enter or a click on one; the screen
passes the selected room back down with ``show``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option, OptionDoesNotExist

INVITE_PREFIX = "invite:"


@dataclass(frozen=True)
class RoomEntry:
    room_id: str
    name: str
    unread: int = 0
    highlights: int = 0


class RoomList(OptionList):
    """Joined rooms (selectable) and invites (``a`` accepts, ``d`` declines)."""

    BINDINGS = [  # noqa: RUF012 (Textual's class attribute)
        Binding("a", "answer(True)", "Accept invite"),
        Binding("d", "answer(False)", "Decline invite"),
    ]

    class Selected(Message):
        def __init__(self, room_id: str) -> None:
            super().__init__()
            self.room_id = room_id

    class InviteOpened(Message):
        """Enter (or a click) on an invite: the screen asks what to do."""

        def __init__(self, room_id: str) -> None:
            super().__init__()
            self.room_id = room_id

    class InviteAnswer(Message):
        def __init__(self, room_id: str, accept: bool) -> None:
            super().__init__()
            self.room_id = room_id
            self.accept = accept

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rooms: list[RoomEntry] = []
        self.invites: list[RoomEntry] = []
        self.selected: str | None = None

    def show(self, rooms: list[RoomEntry], invites: list[RoomEntry], selected: str | None) -> None:
        # The highlight stays where the user put it (a /sync refreshes the list), unless
        # another room was selected or that option is gone.
        kept = None
        if selected == self.selected and self.highlighted is not None:
            kept = self.get_option_at_index(self.highlighted).id
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
        for option_id in (kept, selected):
            if option_id is None:
                continue
            try:
                self.highlighted = self.get_option_index(option_id)
                break
            except OptionDoesNotExist:
                pass

    @staticmethod
    def _label(room: RoomEntry, selected: bool) -> Text:
        text = Text(("▌" if selected else " ") + room.name, style="bold" if selected else "")
        if room.unread:
            text.append(f" {room.unread}", style="bold cyan")
        if room.highlights:
            text.append(f" !{room.highlights}", style="bold red")
        return text

    def highlighted_invite(self) -> str | None:
        """The room ID of the highlighted invite, if an invite is highlighted."""
        if self.highlighted is None:
            return None
        option_id = self.get_option_at_index(self.highlighted).id or ""
        return (
            option_id.removeprefix(INVITE_PREFIX) if option_id.startswith(INVITE_PREFIX) else None
        )

    def action_answer(self, accept: bool) -> None:
        room_id = self.highlighted_invite()
        if room_id is None:
            self.notify("a / d answer an invite: highlight one first", severity="warning")
            return
        self.post_message(self.InviteAnswer(room_id, accept))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        option_id = event.option.id
        if option_id and option_id.startswith(INVITE_PREFIX):
            self.post_message(self.InviteOpened(option_id.removeprefix(INVITE_PREFIX)))
        elif option_id and option_id != "invites":
            self.post_message(self.Selected(option_id))
