"""What one /sync computes, and how each area adds its part.

The SyncService builds the room timelines and state; every other area (account
data, to-device, E2EE key counts, typing, receipts, presence, push counts) is a
:class:`SyncExtension` that adds its own sections to the response from the same
:class:`SyncContext`. Spec: api/client-server/sync.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from node.storage.events import StoredEvent
from node.sync.filters import SyncFilter
from node.sync.tokens import StreamToken


@dataclass
class SyncContext:
    user_id: str
    device_id: str
    # None for an initial sync. Extensions return changes in (since, upto].
    since: StreamToken | None
    upto: StreamToken
    full_state: bool
    filter: SyncFilter
    joined_rooms: list[str] = field(default_factory=list)
    response: dict[str, Any] = field(default_factory=dict)
    # Room ID -> the user's newest membership event in (since, upto], as the sync
    # service read it (None until it has, and in an initial sync).
    membership_changes: dict[str, StoredEvent] | None = None

    def since_position(self, stream: str) -> int:
        return 0 if self.since is None else self.since.get(stream)

    def joined_room(self, room_id: str) -> dict[str, Any]:
        """The response's entry for a joined room, created on first use."""
        rooms = self.response.setdefault("rooms", {}).setdefault("join", {})
        return rooms.setdefault(room_id, {})  # type: ignore[no-any-return]

    def section(self, name: str) -> dict[str, Any]:
        """A top-level response section such as ``account_data`` or ``to_device``."""
        return self.response.setdefault(name, {})  # type: ignore[no-any-return]


class SyncExtension(Protocol):
    async def add_to_sync(self, ctx: SyncContext) -> None:
        """Add this area's changes in (ctx.since, ctx.upto] to ctx.response.

        Add nothing when there is nothing new: an empty response lets a long-polling
        /sync keep waiting."""
