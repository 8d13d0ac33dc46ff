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
from dataclasses import dataclass, field
from typing import Any

import nio
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label

from tui.commands import CommandError, describe, run_command
from tui.screens.invite import InviteScreen
from tui.widgets import Composer, RoomEntry, RoomList, Timeline
from tui.widgets.timeline import transaction_id

SYNC_TIMEOUT_MS = 30_000
SYNC_FILTER = {"room": {"timeline": {"limit": 30}}}
PAGE = 50  # events per /messages page
RETRY_S = 2.0


@dataclass
class RoomHistory:
    """What the client holds of one room: events oldest first, and where /messages
    goes on from (None with ``complete`` once the room's start was reached)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    prev_batch: str | None = None
    complete: bool = False
    echoes: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    """Messages sent from here that /sync has not brought back: transaction ID ->
    (the event as shown, ``pending`` or ``failed``)."""


class ChatScreen(Screen[None]):
    BINDINGS = [  # noqa: RUF012
        Binding("ctrl+n", "next_room", "Next room", priority=True),
        Binding("ctrl+p", "previous_room", "Previous room", priority=True),
    ]

    def __init__(self, client: nio.AsyncClient, sync_timeout_ms: int = SYNC_TIMEOUT_MS) -> None:
        super().__init__()
        self.client = client
        self.sync_timeout_ms = sync_timeout_ms
        self.histories: dict[str, RoomHistory] = {}
        self.selected: str | None = None
        self.synced = asyncio.Event()
        self.marked_read: dict[str, str] = {}  # room ID -> the event marked read
        self.open_next: str | None = None  # a room just joined: shown once /sync has it
        self.said: list[str] = []  # every status message, oldest first

    def say(self, message: str, severity: Any = "information") -> None:
        """A status message (a toast), kept in ``said``."""
        self.said.append(message)
        self.notify(message, severity=severity)

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield RoomList(id="rooms")
            with Vertical(id="main"):
                yield Label("", id="room-title")
                yield Timeline(id="timeline")
                yield Composer(id="composer")
        yield Footer()

    def on_mount(self) -> None:
        self.sync_loop()
        self.query_one(Composer).focus()

    # -- sync ---------------------------------------------------------------------------

    @work(group="sync", exclusive=True)
    async def sync_loop(self) -> None:
        timeout = 0  # the first sync answers at once: the screen fills quickly
        while True:
            response = await self.client.sync(
                timeout=timeout, since=self.client.next_batch, sync_filter=SYNC_FILTER
            )
            if not isinstance(response, nio.SyncResponse):
                self.say(f"sync failed: {response.message}", severity="error")
                await asyncio.sleep(RETRY_S)
                continue
            self.apply_sync(response)
            timeout = self.sync_timeout_ms

    def apply_sync(self, response: nio.SyncResponse) -> None:
        for room_id, info in response.rooms.join.items():
            history = self.histories.setdefault(room_id, RoomHistory())
            events = [e.source for e in info.timeline.events]
            if info.timeline.limited and history.events:  # a gap: start again from here
                history.events.clear()
                history.complete = False
                if room_id == self.selected:
                    self.query_one(Timeline).show([], self.name_of(room_id), history.echoes)
            if not history.events:
                history.prev_batch = info.timeline.prev_batch
            history.events += events
            for event in events:
                history.echoes.pop(transaction_id(event) or "", None)
            if room_id == self.selected:
                self.query_one(Timeline).append(events)
                self.mark_read(room_id)
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
                self.query_one(Timeline).show([], str)
            self.show_title()  # the name or topic may have changed
            self.refresh_rooms()
        self.synced.set()

    def room_entries(self) -> list[RoomEntry]:
        rooms = [
            RoomEntry(r.room_id, r.display_name, r.unread_notifications, r.unread_highlights)
            for r in self.client.rooms.values()
        ]
        return sorted(rooms, key=lambda r: (r.name.casefold(), r.room_id))

    def invite_entries(self) -> list[RoomEntry]:
        invites = [RoomEntry(r.room_id, r.display_name) for r in self.client.invited_rooms.values()]
        return sorted(invites, key=lambda r: (r.name.casefold(), r.room_id))

    def refresh_rooms(self) -> None:
        self.query_one(RoomList).show(self.room_entries(), self.invite_entries(), self.selected)

    def name_of(self, room_id: str) -> Any:
        room = self.client.rooms.get(room_id)

        def name(user_id: str) -> str:
            return (room.user_name(user_id) if room else None) or user_id

        return name

    # -- selection ----------------------------------------------------------------------

    def select(self, room_id: str) -> None:
        self.selected = room_id
        self.show_title()
        history = self.histories.setdefault(room_id, RoomHistory())
        self.query_one(Timeline).show(history.events, self.name_of(room_id), history.echoes)
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
        events = self.histories[room_id].events if room_id in self.histories else []
        newest = next((e.get("event_id") for e in reversed(events) if e.get("event_id")), None)
        if isinstance(newest, str) and self.marked_read.get(room_id) != newest:
            self.marked_read[room_id] = newest
            self.send_read_markers(room_id, newest)

    @work(group="read")
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

    # -- scrollback ---------------------------------------------------------------------

    @on(Timeline.NeedOlder)
    def on_need_older(self) -> None:
        if self.selected is not None:
            self.load_older(self.selected)

    @work(group="older", exclusive=True)
    async def load_older(self, room_id: str) -> None:
        history = self.histories.setdefault(room_id, RoomHistory())
        if history.complete:
            return
        response = await self.client.room_messages(room_id, start=history.prev_batch, limit=PAGE)
        if not isinstance(response, nio.RoomMessagesResponse):
            self.say(f"cannot load older messages: {response.message}", severity="error")
            return
        older = [e.source for e in reversed(response.chunk)]
        known = {e.get("event_id") for e in history.events}
        older = [e for e in older if e.get("event_id") not in known]
        history.events[:0] = older
        history.prev_batch = response.end
        if not response.chunk or not response.end:
            history.complete = True
        if room_id == self.selected:
            self.query_one(Timeline).prepend(older)

    # -- sending ------------------------------------------------------------------------

    @on(Composer.Send)
    def on_send(self, message: Composer.Send) -> None:
        if self.selected is None:
            self.say("no room selected", severity="warning")
            return
        room_id, txn = self.selected, uuid.uuid4().hex
        echo = {"type": "m.room.message", "sender": self.client.user_id}
        echo["content"] = message.content
        history = self.histories.setdefault(room_id, RoomHistory())
        history.echoes[txn] = (echo, "pending")
        self.query_one(Timeline).echo(txn, echo)
        self.send(room_id, message.content, txn)

    @work(group="send")
    async def send(self, room_id: str, content: dict[str, Any], txn: str) -> None:
        response = await self.client.room_send(room_id, "m.room.message", content, tx_id=txn)
        if isinstance(response, nio.RoomSendResponse):
            return
        self.say(f"not sent: {describe(response)}", severity="error")
        history = self.histories.setdefault(room_id, RoomHistory())
        if txn in history.echoes:
            history.echoes[txn] = (history.echoes[txn][0], "failed")
        if room_id == self.selected:
            self.query_one(Timeline).failed(txn)

    # -- commands and invites -----------------------------------------------------------

    @on(Composer.Run)
    def on_run(self, message: Composer.Run) -> None:
        self.run(message.command)

    @work(group="command")
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

    @work(group="command")
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
        else:
            self.client.invited_rooms.pop(room_id, None)  # /sync confirms with a leave
            self.refresh_rooms()
        self.say(f"joined {name}" if accept else f"declined the invite to {name}")
