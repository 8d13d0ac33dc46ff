"""Push in /sync: ``unread_notifications`` per joined room, and ``m.push_rules``.

Spec: api/client-server/sync.yaml (JoinedRoom.unread_notifications) and
modules/push.md "Receiving notifications". Counts are per room (threads count
toward the main timeline).

push.md "Push Rules: Events": when the user changes their push rules, an
``m.push_rules`` event with the current rules (``{"global": ruleset}``) is sent in the
``account_data`` of their next /sync; account_data.md "Server Behaviour": clients read
it as normal account data (and may not set it). :func:`publish_push_rules` makes it a
computed account data type: its content is always the live rules (so an initial sync
and GET .../account_data/m.push_rules have it before any change), and every change
writes it again, which moves the ``account_data`` stream for incremental syncs.
"""

from __future__ import annotations

from typing import Any

from node.push.service import PushService
from node.sync.context import SyncContext
from node.users.account_data import AccountDataService

PUSH_RULES = "m.push_rules"


def publish_push_rules(push: PushService, account_data: AccountDataService) -> None:
    """Serve ``m.push_rules`` as the user's global account data, kept in step with the
    rules."""

    async def content(user_id: str) -> dict[str, Any]:
        return {"global": await push.ruleset(user_id)}

    async def rules_changed(user_id: str) -> None:
        await account_data.put(user_id, PUSH_RULES, await content(user_id))

    account_data.computed[PUSH_RULES] = content
    push.on_rules_changed.append(rules_changed)


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
