"""Account data in /sync: the top-level ``account_data`` and each joined room's.

Spec: api/client-server/sync.yaml (``account_data``, ``rooms.join.*.account_data``),
modules/account_data.md "Events" and "Filtering" (the filter's ``account_data`` and
``room.account_data`` EventFilters: ``types``, ``not_types``, ``limit``, and for rooms
``rooms``/``not_rooms``). An initial or full-state sync carries every item; an
incremental one the items changed after ``since``. Each item is an event
``{"type", "content"}`` with its latest content.

Computed global types (``m.push_rules``; see node/users/account_data.py) are sent
with their computed content: in every initial sync, stored or not, and in an
incremental one when their item changed (push.md "Push Rules: Events": clients learn
of rule changes from ``m.push_rules`` in ``account_data``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from node.storage.account_data import GLOBAL, AccountDataItem, AccountDataStore
from node.sync.context import SyncContext
from node.sync.filters import EventFilter
from node.users.account_data import STREAM, ComputedContent


def _limited(events: list[dict[str, Any]], event_filter: EventFilter) -> list[dict[str, Any]]:
    """The newest ``limit`` events (the list is oldest change first)."""
    limit = event_filter.limit
    if limit is None or len(events) <= limit:
        return events
    return events[len(events) - limit :]


class AccountDataSync:
    """The SyncExtension for account data (global and per joined room)."""

    def __init__(
        self, store: AccountDataStore, computed: Mapping[str, ComputedContent] | None = None
    ) -> None:
        self.store = store
        # Global types with computed content (AccountDataService.computed: the same dict,
        # so types registered after this extension was made are seen).
        self.computed: Mapping[str, ComputedContent] = {} if computed is None else computed

    async def add_to_sync(self, ctx: SyncContext) -> None:
        upto = ctx.upto.get(STREAM)
        after = None if ctx.since is None or ctx.full_state else ctx.since_position(STREAM)
        if after is not None and after >= upto:
            return
        items = await self._with_computed(
            ctx.user_id, await self.store.changes(ctx.user_id, after, upto), initial=after is None
        )
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

    async def _with_computed(
        self, user_id: str, items: list[AccountDataItem], *, initial: bool
    ) -> list[AccountDataItem]:
        """``items`` with computed types given their computed content; an initial sync
        gets every computed type, first (as the oldest) when it was never stored."""
        if not self.computed:
            return items
        out: list[AccountDataItem] = []
        missing = set(self.computed) if initial else set()
        for item in items:
            compute = self.computed.get(item.type) if item.room_id == GLOBAL else None
            if compute is None:
                out.append(item)
                continue
            missing.discard(item.type)
            content = await compute(user_id)
            out.append(AccountDataItem(GLOBAL, item.type, content, item.stream_id))
        first = [
            AccountDataItem(GLOBAL, data_type, await self.computed[data_type](user_id), 0)
            for data_type in sorted(missing)
        ]
        return first + out
