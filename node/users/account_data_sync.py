"""Account data in /sync: the top-level ``account_data`` and each joined room's.

Spec: api/client-server/sync.yaml (``account_data``, ``rooms.join.*.account_data``),
modules/account_data.md "Events" and "Filtering" (the filter's ``account_data`` and
``room.account_data`` EventFilters: ``types``, ``not_types``, ``limit``, and for rooms
``rooms``/``not_rooms``). An initial or full-state sync carries every item; an
incremental one the items changed after ``since``. Each item is an event
``{"type", "content"}`` with its latest content.
"""

from __future__ import annotations

from typing import Any

from node.storage.account_data import GLOBAL, AccountDataStore
from node.sync.context import SyncContext
from node.sync.filters import EventFilter
from node.users.account_data import STREAM


def _limited(events: list[dict[str, Any]], event_filter: EventFilter) -> list[dict[str, Any]]:
    """The newest ``limit`` events (the list is oldest change first)."""
    limit = event_filter.limit
    if limit is None or len(events) <= limit:
        return events
    return events[len(events) - limit :]


class AccountDataSync:
    """The SyncExtension for account data (global and per joined room)."""

    def __init__(self, store: AccountDataStore) -> None:
        self.store = store

    async def add_to_sync(self, ctx: SyncContext) -> None:
        upto = ctx.upto.get(STREAM)
        after = None if ctx.since is None or ctx.full_state else ctx.since_position(STREAM)
        if after is not None and after >= upto:
            return
        items = await self.store.changes(ctx.user_id, after, upto)
        if not items:
            return
        global_filter = ctx.filter.account_data
        room_filter = ctx.filter.room.account_data
        joined = set(ctx.joined_rooms)
        global_events: list[dict[str, Any]] = []
        room_events: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            event = {"type": item.type, "content": item.content}
            if item.room_id == GLOBAL:
                if global_filter.allows(event):
                    global_events.append(event)
            elif (
                item.room_id in joined
                and room_filter.allows_room(item.room_id)
                and room_filter.allows(event)
            ):
                room_events.setdefault(item.room_id, []).append(event)
        global_events = _limited(global_events, global_filter)
        if global_events:
            ctx.section("account_data").setdefault("events", []).extend(global_events)
        for room_id, events in room_events.items():
            events = _limited(events, room_filter)
            if events:
                section = ctx.joined_room(room_id).setdefault("account_data", {})
                section.setdefault("events", []).extend(events)
