"""The room list: joined rooms with unread and highlight counts, then invites.

Counts are the server's ``unread_notifications`` (client-server API 13.13.1.3, push
notifications in /sync). The list posts ``RoomList.Selected`` when the user picks a
room, ``RoomList.InviteAnswer`` for ``a`` (accept: join) or ``d`` (decline: leave)
on an invite, and ``RoomList.InviteOpened`` for Enter or a click on one; the screen
passes the selected room back down with ``show``.

Sections (client-server API 13.x direct messaging): direct chats (rooms in the user's
``m.direct``, named by the other person), then rooms, then invites (``is_direct``
invites marked). The headings show only when there is more than one kind. A name
filter (``RoomSearch``, ctrl+f) narrows every section.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option, OptionDoesNotExist

from tui.rooms import RoomEntry, filter_entries

INVITE_PREFIX = "invite:"
HEADING_PREFIX = "section:"

__all__ = ["RoomEntry", "RoomList", "RoomSearch"]


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
        self.direct: list[RoomEntry] = []
        self.selected: str | None = None
        self.query = ""  # the name filter

    def show(
        self,
        rooms: list[RoomEntry],
        invites: list[RoomEntry],
        selected: str | None,
        direct: Sequence[RoomEntry] = (),
    ) -> None:
        # The highlight stays where the user put it (a /sync refreshes the list), unless
        # another room was selected or that option is gone.
        kept = None
        if selected == self.selected and self.highlighted is not None:
            kept = self.get_option_at_index(self.highlighted).id
        self.rooms, self.invites, self.selected = rooms, invites, selected
        self.direct = list(direct)
        rooms, invites = filter_entries(rooms, self.query), filter_entries(invites, self.query)
        direct = filter_entries(direct, self.query)
        options: list[Option | None] = []
        if direct:
            options.append(self._heading("Direct chats"))
            options += [Option(self._label(r, r.room_id == selected), id=r.room_id) for r in direct]
            if rooms:
                options.append(self._heading("Rooms"))
        options += [Option(self._label(r, r.room_id == selected), id=r.room_id) for r in rooms]
        if invites:
            if options:
                options.append(None)
            options.append(Option(Text("Invites", style="bold"), id="invites", disabled=True))
            options += [
                Option(
                    Text(f"✉ {r.name}" + (" · direct" if r.direct else ""), style="italic"),
                    id=INVITE_PREFIX + r.room_id,
                )
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
    def _heading(title: str) -> Option:
        return Option(Text(title, style="bold"), id=HEADING_PREFIX + title, disabled=True)

    def set_filter(self, query: str) -> None:
        """Show only the rooms whose name matches ``query`` (all with "")."""
        self.query = query
        self.show(self.rooms, self.invites, self.selected, self.direct)

    def first_match(self) -> str | None:
        """The option ID of the first room listed (an invite has INVITE_PREFIX)."""
        for i in range(self.option_count):
            option = self.get_option_at_index(i)
            if not option.disabled and option.id:
                return option.id
        return None

    def open_option(self, option_id: str) -> None:
        """Post what Enter on that option posts: Selected, or InviteOpened."""
        if option_id.startswith(INVITE_PREFIX):
            self.post_message(self.InviteOpened(option_id.removeprefix(INVITE_PREFIX)))
        elif option_id != "invites" and not option_id.startswith(HEADING_PREFIX):
            self.post_message(self.Selected(option_id))

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
        if event.option.id:
            self.open_option(event.option.id)


class RoomSearch(Input):
    """The name filter over the room list (ctrl+f): typing narrows the list, Enter
    opens the first match, Escape clears the filter. Hidden while not in use."""

    BINDINGS = [  # noqa: RUF012
        Binding("escape", "close", "Clear search"),
    ]

    class Done(Message):
        """The search is over (a room opened, or Escape): the screen moves focus on."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="search rooms", id=id)
        self.display = False

    def start(self) -> None:
        self.display = True
        self.focus()

    def _rooms(self) -> RoomList:
        return self.screen.query_one(RoomList)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._rooms().set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        rooms = self._rooms()
        first = rooms.first_match()
        if first is None:
            self.notify(f"no room matches {event.value!r}", severity="warning")
            return
        rooms.open_option(first)
        self.action_close()

    def action_close(self) -> None:
        self.value = ""
        self._rooms().set_filter("")
        self.display = False
        self.post_message(self.Done())
