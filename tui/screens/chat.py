"""The main screen: room list, timeline of the selected room, composer.

A background worker runs the /sync loop (client-server API 10.4: ``since`` token,
long-poll ``timeout``), keeps each room's events and ``prev_batch``, and hands them
down to the widgets. Older events come from /messages (10.5.4) when the timeline asks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import nio
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label

from tui.widgets import Composer, RoomEntry, RoomList, Timeline

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
                self.notify(f"sync failed: {response.message}", severity="error")
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
                    self.query_one(Timeline).show([], self.name_of(room_id))
            if not history.events:
                history.prev_batch = info.timeline.prev_batch
            history.events += events
            if room_id == self.selected:
                self.query_one(Timeline).append(events)
        for room_id in response.rooms.leave:
            self.histories.pop(room_id, None)
        if self.selected not in self.client.rooms:
            self.selected = None
        entries = self.room_entries()
        if self.selected is None and entries:
            self.select(entries[0].room_id)
        else:
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
        room = self.client.rooms.get(room_id)
        title = room.display_name if room else room_id
        if room and room.topic:
            title += f" — {room.topic}"
        self.query_one("#room-title", Label).update(title)
        history = self.histories.setdefault(room_id, RoomHistory())
        self.query_one(Timeline).show(history.events, self.name_of(room_id))
        self.refresh_rooms()

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
            self.notify(f"cannot load older messages: {response.message}", severity="error")
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
            self.notify("no room selected", severity="warning")
            return
        self.send(self.selected, message.content)

    @work(group="send")
    async def send(self, room_id: str, content: dict[str, Any]) -> None:
        response = await self.client.room_send(room_id, "m.room.message", content)
        if not isinstance(response, nio.RoomSendResponse):
            self.notify(f"not sent: {response.message}", severity="error")
