"""/sync's ``unread_notifications`` for each joined room in the response.

Spec: api/client-server/sync.yaml (JoinedRoom.unread_notifications) and
modules/push.md "Receiving notifications". Counts are per room (threads count
toward the main timeline).
"""

from __future__ import annotations

from node.push.service import PushService
from node.sync.context import SyncContext


class PushSyncExtension:
    def __init__(self, push: PushService) -> None:
        self.push = push

    async def add_to_sync(self, ctx: SyncContext) -> None:
        rooms = ctx.response.get("rooms", {}).get("join", {})
        for room_id, room in rooms.items():
            notify, highlight = await self.push.unread_counts(room_id, ctx.user_id)
            room["unread_notifications"] = {
                "notification_count": notify,
                "highlight_count": highlight,
            }
