"""The main screen: room list, timeline of the selected room, composer.

A background worker runs the /sync loop (client-server API 10.4: ``since`` token,
long-poll ``timeout``), keeps each room's events and ``prev_batch``, and hands them
down to the widgets. Older events come from /messages (10.5.4) when the timeline asks.

The room shown is marked read up to its newest event (``POST /rooms/{roomId}/read_markers``
with ``m.fully_read`` and ``m.read``, client-server API 11.6 / 11.7), so the server's
unread counts go down. Invites are answered from the room list (join or leave, 10.x
room membership); composer commands run through tui/commands.py.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import nio
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Label

from tui import actions, crypto
from tui import rooms as room_logic
from tui.calls import TuiCalls
from tui.commands import CommandError, describe, run_command
from tui.render import summary
from tui.screens import call as call_ui
from tui.screens.confirm import ConfirmScreen, ReactScreen
from tui.screens.create_room import CreateRoomScreen, DirectChatScreen
from tui.screens.devices import DevicesScreen
from tui.screens.invite import InviteScreen
from tui.screens.room_settings import RoomSettingsScreen
from tui.screens.verify import VerifyScreen
from tui.timeline_model import Entry, RoomTimeline, editable
from tui.widgets import Composer, RoomEntry, RoomList, Timeline
from tui.widgets.members import MembersPanel
from tui.widgets.room_list import RoomSearch
from tui.workers import closing, ui_work

SYNC_TIMEOUT_MS = 30_000
SYNC_FILTER = {"room": {"timeline": {"limit": 30}}}
FIRST_SYNC_FILTER = {"room": {"timeline": {"limit": 10}}}  # less to parse: ready sooner
PAGE = 50  # events per /messages page
FILL = 20  # a room opened with fewer entries fetches a page at once
RETRY_S = 2.0


class ChatScreen(Screen[None]):
    BINDINGS = [  # noqa: RUF012
        Binding("ctrl+n", "next_room", "Next room", priority=True),
        Binding("ctrl+p", "previous_room", "Previous room", priority=True),
        Binding("ctrl+f", "search_rooms", "Search rooms", priority=True),
        Binding("ctrl+o", "create_room", "Create room", priority=True),
        Binding("ctrl+d", "direct_chat", "Direct chat", priority=True),
        Binding("f2", "toggle_members", "Members", priority=True),
        Binding("f3", "room_settings", "Room settings", priority=True),
        Binding("f6", "devices", "Devices", priority=True),
        Binding("ctrl+k", "call", "Call", priority=True),
    ]

    def __init__(
        self,
        client: nio.AsyncClient,
        sync_timeout_ms: int = SYNC_TIMEOUT_MS,
        calls: TuiCalls | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.calls = calls or TuiCalls(client)  # m.call.* (tui/calls.py, screens/call.py)
        self.sync_timeout_ms = sync_timeout_ms
        self.histories: dict[str, RoomTimeline] = {}  # room ID -> what the client holds
        self.selected: str | None = None
        self.synced = asyncio.Event()
        self.marked_read: dict[str, str] = {}  # room ID -> the event marked read
        self.open_next: str | None = None  # a room just joined: shown once /sync has it
        self.said: list[str] = []  # every status message, oldest first
        self.typing: dict[str, list[str]] = {}  # room ID -> the others typing there
        self.typing_in: str | None = None  # the room told that the user is typing
        self.directs = room_logic.DirectChats()  # m.direct and direct invites (tui/rooms.py)

    def say(self, message: str, severity: Any = "information") -> None:
        """A status message (a toast), kept in ``said``."""
        self.said.append(message)
        self.notify(message, severity=severity)

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="room-pane"):
                yield RoomSearch(id="room-search")
                yield RoomList(id="rooms")
            with Vertical(id="main"):
                with Horizontal(id="title-row"):
                    yield Label("", id="room-title")
                    yield Button("📞 Call", id="call-button", compact=True)
                yield Timeline(id="timeline")
                yield Label("", id="typing")
                yield Label("", id="composer-context")
                yield Composer(id="composer")
            yield MembersPanel(self.client, id="members")
        yield Footer()

    def on_mount(self) -> None:
        self.sync_loop()
        self.query_one(Composer).focus()
        self.query_one("#call-button", Button).can_focus = False  # ctrl+k is its key
        self.calls.start(lambda change: call_ui.call_changed(self, change), self.say)
        self.run_worker(self.calls.run(), group="calls")

    # -- sync ---------------------------------------------------------------------------

    @ui_work(group="sync", exclusive=True)
    async def sync_loop(self) -> None:
        timeout = 0  # the first sync answers at once: the screen fills quickly
        while True:
            first = not self.client.next_batch
            response = await self.client.sync(
                timeout=timeout,
                since=self.client.next_batch,
                sync_filter=FIRST_SYNC_FILTER if first else SYNC_FILTER,
            )
            if closing(self):
                return  # the app is closing: its widgets are going, leave them be
            if not isinstance(response, nio.SyncResponse):
                self.say(f"sync failed: {response.message}", severity="error")
                await asyncio.sleep(RETRY_S)
                continue
            self.apply_sync(response)
            await self.after_sync_encryption(response)
            timeout = self.sync_timeout_ms

    def apply_sync(self, response: nio.SyncResponse) -> None:
        self.directs.update(response, self.client.user_id)
        for room_id, info in response.rooms.join.items():
            history = self.history(room_id)
            events = [crypto.event_dict(e) for e in info.timeline.events]
            if info.timeline.limited and history.newest_event_id():  # a gap: start again
                history.clear()
            if history.newest_event_id() is None:
                history.prev_batch = info.timeline.prev_batch
            history.extend(events)
            self.calls.feed(room_id, events)
            typing = actions.apply_ephemeral(history, info.ephemeral)
            if typing is not None:
                self.typing[room_id] = typing
            if room_id == self.selected:
                self.query_one(Timeline).refresh_model()
                self.mark_read(room_id)
                self.show_typing()
        for room_id in response.rooms.leave:  # nio keeps left rooms: the list does not
            self.histories.pop(room_id, None)
            self.client.rooms.pop(room_id, None)
            self.client.invited_rooms.pop(room_id, None)
        if self.selected not in self.client.rooms:
            self.selected = None
        entries = self.room_entries()
        if self.open_next in self.client.rooms:
            self.select(self.open_next)
            self.open_next = None
        elif self.selected is None and entries:
            self.select(entries[0].room_id)
        else:
            if self.selected is None:
                self.query_one(Timeline).show(RoomTimeline(), str)
            self.show_title()  # the name or topic may have changed
            self.refresh_rooms()
        self.synced.set()

    def room_entries(self) -> list[RoomEntry]:
        """Joined rooms as listed: direct chats, then rooms."""
        return room_logic.sections(self.client, self.directs).joined()

    def invite_entries(self) -> list[RoomEntry]:
        return room_logic.sections(self.client, self.directs).invites

    def refresh_rooms(self) -> None:
        listed = room_logic.sections(self.client, self.directs)
        self.query_one(RoomList).show(listed.rooms, listed.invites, self.selected, listed.direct)
        room_id = self.selected or ""
        creators = self.directs.creators.get(room_id, ())
        self.query_one(MembersPanel).show(self.client.rooms.get(room_id), creators)

    def history(self, room_id: str) -> RoomTimeline:
        if room_id not in self.histories:
            self.histories[room_id] = RoomTimeline(self.client.user_id)
        return self.histories[room_id]

    def name_of(self, room_id: str) -> Any:
        room = self.client.rooms.get(room_id)

        def name(user_id: str) -> str:
            return (room.user_name(user_id) if room else None) or user_id

        return name

    # -- selection ----------------------------------------------------------------------

    def select(self, room_id: str) -> None:
        self.selected = room_id
        self.show_title()
        timeline = self.query_one(Timeline)
        timeline.show(self.history(room_id), self.name_of(room_id))
        history = self.history(room_id)
        if not history.complete and len(history.entries) < max(FILL, timeline.size.height):
            self.load_older(room_id)  # the first sync brought only the newest few
        self.query_one(Composer).leave_mode()
        self.show_typing()
        self.refresh_rooms()
        self.mark_read(room_id)

    def show_title(self) -> None:
        room = self.client.rooms.get(self.selected or "")
        title = room.display_name if room else ""
        if room and room.topic:
            title += f" — {room.topic}"
        self.query_one("#room-title", Label).update(title)

    def mark_read(self, room_id: str) -> None:
        """Mark ``room_id`` read up to its newest event, once per event."""
        newest = self.history(room_id).newest_event_id()
        if newest is not None and self.marked_read.get(room_id) != newest:
            self.marked_read[room_id] = newest
            self.send_read_markers(room_id, newest)

    @ui_work(group="read")
    async def send_read_markers(self, room_id: str, event_id: str) -> None:
        response = await self.client.room_read_markers(room_id, event_id, event_id)
        if not isinstance(response, nio.RoomReadMarkersResponse):
            self.marked_read.pop(room_id, None)  # try again with the next event
            self.say(f"cannot mark the room read: {response.message}", severity="warning")

    @on(RoomList.Selected)
    def on_room_selected(self, message: RoomList.Selected) -> None:
        self.select(message.room_id)

    def _step(self, delta: int) -> None:
        ids = [r.room_id for r in self.room_entries()]
        if not ids:
            return
        at = ids.index(self.selected) if self.selected in ids else -delta
        self.select(ids[(at + delta) % len(ids)])

    def action_next_room(self) -> None:
        self._step(1)

    def action_previous_room(self) -> None:
        self._step(-1)

    # -- rooms: search, create, direct chats, members, settings (tui/rooms.py) ----------

    def open_room(self, room_id: str | None) -> None:
        """Show ``room_id`` now if /sync has it, else once it does."""
        if room_id in self.client.rooms:
            self.select(room_id)
        elif room_id is not None:
            self.open_next = room_id

    def action_search_rooms(self) -> None:
        self.query_one(RoomSearch).start()

    @on(RoomSearch.Done)
    def on_search_done(self) -> None:
        self.query_one(Composer).focus()

    def action_create_room(self) -> None:
        self.app.push_screen(CreateRoomScreen(self.client), self.open_room)

    def action_direct_chat(self) -> None:
        self.app.push_screen(DirectChatScreen(self.client, self.directs), self.open_room)

    def action_toggle_members(self) -> None:
        room_id = self.selected or ""
        creators = self.directs.creators.get(room_id, ())
        self.query_one(MembersPanel).toggle(self.client.rooms.get(room_id), creators)

    def action_room_settings(self) -> None:
        room = self.client.rooms.get(self.selected or "")
        if room is None:
            self.say("no room selected", severity="warning")
            return

        def saved(room_id: str | None) -> None:
            if room_id is not None:
                self.say("room settings saved")

        self.app.push_screen(RoomSettingsScreen(self.client, room), saved)

    # -- scrollback ---------------------------------------------------------------------

    @on(Timeline.NeedOlder)
    def on_need_older(self) -> None:
        if self.selected is not None:
            self.load_older(self.selected)

    @ui_work(group="older", exclusive=True)
    async def load_older(self, room_id: str) -> None:
        history = self.history(room_id)
        if history.complete:
            return
        timeline = self.query_one(Timeline)
        timeline.fetching = True
        timeline.refresh()
        try:
            response = await self.client.room_messages(
                room_id, start=history.prev_batch, limit=PAGE
            )
        finally:
            timeline.fetching = False
            timeline.refresh()
        if not isinstance(response, nio.RoomMessagesResponse):
            self.say(f"cannot load older messages: {response.message}", severity="error")
            return
        history.prepend(crypto.event_dict(e) for e in reversed(response.chunk))
        history.prev_batch = response.end
        if not response.chunk or not response.end:
            history.complete = True
        if room_id == self.selected:
            timeline.refresh_model()

    # -- sending ------------------------------------------------------------------------

    @on(Composer.Send)
    def on_send(self, message: Composer.Send) -> None:
        if self.selected is None:
            self.say("no room selected", severity="warning")
            return
        room_id, txn = self.selected, uuid.uuid4().hex
        content = message.content
        if message.editing is not None:
            content = actions.replacement(message.editing, content)
        elif message.reply_to is not None:
            content = actions.reply(message.reply_to, content)
        if message.editing is None:  # an edit shows when /sync brings it
            echo = {"type": "m.room.message", "sender": self.client.user_id, "content": content}
            self.history(room_id).echo(txn, echo)
            self.query_one(Timeline).refresh_model()
        self.send(room_id, "m.room.message", content, txn)
        self.set_typing(room_id, False)

    @ui_work(group="send")
    async def send(self, room_id: str, event_type: str, content: dict[str, Any], txn: str) -> None:
        try:
            response = await self.client.room_send(
                room_id, event_type, content, tx_id=txn, ignore_unverified_devices=True
            )
        except crypto.SEND_ERRORS as e:  # cannot encrypt for the room
            response = nio.RoomSendError(f"cannot encrypt: {e}")
        if isinstance(response, nio.RoomSendResponse):
            return
        self.say(f"not sent: {describe(response)}", severity="error")
        self.history(room_id).failed(txn)
        if room_id == self.selected:
            self.query_one(Timeline).refresh_model()

    # -- typing and the composer's modes -------------------------------------------------

    def show_typing(self) -> None:
        users = self.typing.get(self.selected or "", [])
        line = actions.typing_line(users, self.name_of(self.selected or ""))
        self.query_one("#typing", Label).update(line)

    @on(Composer.Typing)
    def on_typing(self, message: Composer.Typing) -> None:
        if self.selected is not None:
            self.set_typing(self.selected, message.typing)

    @ui_work(group="typing")
    async def set_typing(self, room_id: str, typing: bool) -> None:
        if not typing and self.typing_in != room_id:
            return
        if typing and self.typing_in not in (None, room_id):
            await self.client.room_typing(self.typing_in or "", False)
        self.typing_in = room_id if typing else None
        response = await self.client.room_typing(room_id, typing, timeout=30_000)
        if not isinstance(response, nio.RoomTypingResponse):
            self.typing_in = None  # not worth a toast: the message itself still goes

    @on(Composer.ModeChanged)
    def on_mode_changed(self) -> None:
        composer = self.query_one(Composer)
        name_of = self.name_of(self.selected or "")
        line = ""
        if composer.editing is not None:
            line = f"✎ editing: {summary(composer.editing, name_of)}  (Escape cancels)"
        elif composer.reply_to is not None:
            line = f"↳ replying to {summary(composer.reply_to, name_of)}  (Escape cancels)"
        self.query_one("#composer-context", Label).update(line)
        self.query_one("#composer-context", Label).display = bool(line)

    @on(Composer.EditLast)
    def on_edit_last(self) -> None:
        entry = self.history(self.selected).last_own_message() if self.selected else None
        if entry is not None:
            self.query_one(Composer).start_edit(entry)

    # -- acting on a message (the timeline's cursor) -------------------------------------

    @on(Timeline.Act)
    def on_act(self, message: Timeline.Act) -> None:
        entry, room_id = message.entry, self.selected
        composer = self.query_one(Composer)
        if room_id is None or entry.state != "sent" or not entry.event_id:
            self.say("this message is not sent yet", severity="warning")
            return
        if message.action == "reply":
            composer.start_reply(entry)
        elif message.action == "edit":
            if not editable(entry, self.client.user_id):
                self.say("only your own messages can be edited", severity="warning")
                return
            composer.start_edit(entry)
        elif message.action == "redact":

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.redact(room_id, entry.event_id)

            question = f"Delete this message?\n{summary(entry, self.name_of(room_id))}"
            self.app.push_screen(ConfirmScreen(question, "Delete"), confirmed)
        elif message.action == "react":

            def picked(key: str | None) -> None:
                if key:
                    self.react(room_id, entry, key)

            self.app.push_screen(ReactScreen(), picked)
        elif message.action == "save":
            self.save(entry)

    @ui_work(group="command")
    async def redact(self, room_id: str, event_id: str, what: str = "message") -> None:
        response = await self.client.room_redact(room_id, event_id)
        if not isinstance(response, nio.RoomRedactResponse):
            self.say(f"cannot delete the {what}: {describe(response)}", severity="error")
        elif what == "message":
            self.say("message deleted")

    def react(self, room_id: str, entry: Entry, key: str) -> None:
        """React with ``key``, or take one's own ``key`` reaction back."""
        own = self.history(room_id).own_reaction(entry.event_id, key)
        if own is not None:
            self.redact(room_id, own, "reaction")
        else:
            self.send(room_id, "m.reaction", actions.reaction(entry, key), uuid.uuid4().hex)

    @ui_work(group="save")
    async def save(self, entry: Entry) -> None:
        try:
            path = await actions.save_attachment(self.client, entry, actions.download_dir())
        except actions.SaveError as e:
            self.say(str(e), severity="error")
        except OSError as e:
            self.say(f"cannot save the file: {e.strerror or e}", severity="error")
        else:
            self.say(f"saved {path}")

    # -- encryption (tui/crypto.py, tui/screens/verify.py) -------------------------------

    async def after_sync_encryption(self, response: nio.SyncResponse) -> None:
        """Key upload/query/claim and to-device sends; verifications other devices start
        open the SAS dialog; late room keys decrypt the events shown undecryptable."""
        for problem in await crypto.maintain(self.client):
            self.say(problem, severity="warning")
        for sas in crypto.new_verifications(self.client, response):
            self.app.push_screen(VerifyScreen(self.client, sas))
        if crypto.keys_arrived(response):
            for room_id, history in self.histories.items():
                if crypto.redecrypt(self.client, room_id, history) and room_id == self.selected:
                    self.query_one(Timeline).refresh_model()

    def action_devices(self) -> None:
        if not isinstance(self.app.screen, DevicesScreen):
            self.app.push_screen(DevicesScreen(self.client, self.selected))

    # -- commands and invites -----------------------------------------------------------

    @on(Composer.Run)
    def on_run(self, message: Composer.Run) -> None:
        if message.command.name == "call":
            self.action_call()
        else:
            self.run(message.command)

    def action_call(self) -> None:
        call_ui.call_pressed(self)

    @on(Button.Pressed, "#call-button")
    def on_call_button(self) -> None:
        self.action_call()

    @ui_work(group="command")
    async def run(self, command: Any) -> None:
        try:
            done = await run_command(self.client, self.selected, command)
        except CommandError as e:
            self.say(str(e), severity="error")
            return
        if command.name == "join":
            self.open_next = done.room_id
        self.say(done.message)

    @on(RoomList.InviteAnswer)
    def on_invite_answer(self, message: RoomList.InviteAnswer) -> None:
        self.answer_invite(message.room_id, message.accept)

    @on(RoomList.InviteOpened)
    def on_invite_opened(self, message: RoomList.InviteOpened) -> None:
        room_id = message.room_id
        room = self.client.invited_rooms.get(room_id)
        name = room.display_name if room else room_id
        inviter = room.inviter if room else None

        def answered(accept: bool | None) -> None:
            if accept is not None:
                self.answer_invite(room_id, accept)

        self.app.push_screen(InviteScreen(name, inviter), answered)

    @ui_work(group="command")
    async def answer_invite(self, room_id: str, accept: bool) -> None:
        room = self.client.invited_rooms.get(room_id)
        name = room.display_name if room else room_id
        if accept:
            response: Any = await self.client.join(room_id)
            ok = isinstance(response, nio.JoinResponse)
        else:
            response = await self.client.room_leave(room_id)
            ok = isinstance(response, nio.RoomLeaveResponse)
        if not ok:
            what = "accept" if accept else "decline"
            self.say(f"cannot {what} the invite to {name}: {describe(response)}", severity="error")
            return
        if accept:
            self.open_next = room_id
            try:  # an invite with is_direct: a direct chat from now on (tui/rooms.py)
                await room_logic.accepted_invite(self.client, self.directs, room_id, room)
            except room_logic.RoomError as e:
                self.say(str(e), severity="warning")
        else:
            self.client.invited_rooms.pop(room_id, None)  # /sync confirms with a leave
            self.refresh_rooms()
        self.say(f"joined {name}" if accept else f"declined the invite to {name}")
