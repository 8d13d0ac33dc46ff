"""Dialogs that make rooms: create a room (ctrl+o) and start a direct chat (ctrl+d).

Create room: ``POST /createRoom`` (client-server API 10.1) with a name, a topic, an
alias local part, the public or private preset, encryption (``m.room.encryption`` in
``initial_state``, on by default for private rooms) and users to invite. Direct chat:
an existing direct chat with the user (``m.direct``, 13.x direct messaging), or a new
room with ``is_direct`` (see tui/rooms.py). Both dismiss with the room ID to open; a
refusal is shown in one line and the dialog stays open with what was typed.
"""

from __future__ import annotations

import nio
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from tui.rooms import DirectChats, NewRoom, RoomError, create_room, open_direct_chat, parse_invitees
from tui.workers import ui_work


class RoomDialog(ModalScreen[str | None]):
    """A dialog with an error line; Escape cancels (dismisses with None)."""

    BINDINGS = [  # noqa: RUF012
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, client: nio.AsyncClient) -> None:
        super().__init__()
        self.client = client
        self.error = ""

    def show_error(self, message: str) -> None:
        self.error = message
        self.query_one(".dialog-error", Static).update(message)

    def buttons(self, ok: str) -> ComposeResult:
        yield Static("", classes="dialog-error", markup=False)
        with Horizontal(classes="dialog-buttons"):
            yield Button(ok, id="ok", variant="primary")
            yield Button("Cancel (Esc)", id="cancel")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted)
    def submit(self) -> None:
        self.query_one("#ok", Button).disabled = True
        self.show_error("")
        self.run_request()

    @ui_work(group="dialog", exclusive=True)
    async def run_request(self) -> None:
        try:
            room_id = await self.request()
        except RoomError as e:
            self.show_error(str(e))
            self.query_one("#ok", Button).disabled = False
            return
        self.dismiss(room_id)

    async def request(self) -> str:
        raise NotImplementedError


class CreateRoomScreen(RoomDialog):
    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="create-room"):
            yield Label("[b]Create a room[/b]")
            yield Input(placeholder="name", id="name")
            yield Input(placeholder="topic (optional)", id="topic")
            yield Input(placeholder="alias (optional): porch for #porch:server", id="alias")
            yield Input(placeholder="invite (optional): @user:server, ...", id="invite")
            with Horizontal(classes="dialog-options"):
                yield Checkbox("Public", id="public")
                yield Checkbox("Encrypted", value=True, id="encrypted")
            yield from self.buttons("Create (Enter)")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    @on(Checkbox.Changed, "#public")
    def on_public(self, event: Checkbox.Changed) -> None:
        # As Element: private rooms are encrypted by default, public ones not.
        self.query_one("#encrypted", Checkbox).value = not event.value

    def new_room(self) -> NewRoom:
        def text(field: str) -> str:
            return self.query_one(f"#{field}", Input).value.strip()

        return NewRoom(
            name=text("name"),
            topic=text("topic"),
            alias=text("alias"),
            public=self.query_one("#public", Checkbox).value,
            encrypted=self.query_one("#encrypted", Checkbox).value,
            invite=parse_invitees(text("invite")),
        )

    async def request(self) -> str:
        new = self.new_room()
        if not (new.name or new.alias):
            raise RoomError("give the room a name or an alias")
        return await create_room(self.client, new)


class DirectChatScreen(RoomDialog):
    def __init__(self, client: nio.AsyncClient, directs: DirectChats) -> None:
        super().__init__(client)
        self.directs = directs
        self.created: bool | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="direct-chat"):
            yield Label("[b]Direct chat with[/b]")
            yield Input(placeholder="@someone:server", id="user")
            yield from self.buttons("Open (Enter)")

    def on_mount(self) -> None:
        self.query_one("#user", Input).focus()

    async def request(self) -> str:
        user_id = self.query_one("#user", Input).value.strip()
        room_id, self.created = await open_direct_chat(self.client, self.directs, user_id)
        return room_id
