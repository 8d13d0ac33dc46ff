"""Pruning ``push_notifications``: read notifications older than the retention (30 days)
or beyond the newest ``NOTIFICATIONS_KEPT`` of the user go, on write; unread ones
stay, so ``unread_notifications`` in /sync never changes by pruning, not even after
a later receipt counts again from the remaining rows (node/push/store.py).

Spec: content/client-server-api/modules/push.md "Receiving notifications", "Marking
notifications as read"; api/client-server/notifications.yaml (``read``).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from node.app import RunningNode
from node.storage.accounts import now_ms
from tests.push.conftest import OWNER_ID, call
from tests.push.test_push_delivery import bob_joins, bob_says

DAY_MS = 24 * 3600 * 1000
MENTION = {"m.mentions": {"user_ids": [OWNER_ID]}}


async def room_with_bob(http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode) -> str:
    created = await call(http, "POST", f"{v3}/createRoom", token, {"preset": "public_chat"})
    room_id = str(created["room_id"])
    await bob_joins(node, room_id)
    return room_id


async def listed(http: aiohttp.ClientSession, v3: str, token: str) -> list[tuple[str, bool]]:
    """(event ID, read) of GET /notifications, newest first."""
    got = await call(http, "GET", f"{v3}/notifications", token)
    return [(n["event"]["event_id"], n["read"]) for n in got["notifications"]]


async def unread(http: aiohttp.ClientSession, v3: str, token: str, room_id: str) -> Any:
    """The room's ``unread_notifications`` in an initial /sync."""
    data = await call(http, "GET", f"{v3}/sync", token, timeout="0")
    return data["rooms"]["join"][room_id]["unread_notifications"]


async def read_up_to(
    http: aiohttp.ClientSession, v3: str, token: str, room_id: str, event_id: str
) -> None:
    await call(http, "POST", f"{v3}/rooms/{room_id}/receipt/m.read/{event_id}", token, {})


def counts(notify: int, highlight: int) -> dict[str, int]:
    return {"notification_count": notify, "highlight_count": highlight}


async def test_old_read_notifications_go_and_unread_ones_stay(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    push = node.node.push
    room_id = await room_with_bob(http, v3, token, node)
    m1 = await bob_says(node, room_id, "one", **MENTION)
    m2 = await bob_says(node, room_id, "two")
    m3 = await bob_says(node, room_id, "three", **MENTION)
    m4 = await bob_says(node, room_id, "four")
    m5 = await bob_says(node, room_id, "five", **MENTION)
    await read_up_to(http, v3, token, room_id, m3)
    assert await unread(http, v3, token, room_id) == counts(2, 1)
    everything = [(m5, False), (m4, False), (m3, True), (m2, True), (m1, True)]
    assert await listed(http, v3, token) == everything

    # Nothing is older than 30 days yet: nothing goes.
    assert await push.prune_notifications(now_ms() + 29 * DAY_MS) == 0
    assert await listed(http, v3, token) == everything

    # 31 days on: the read ones go, the unread ones stay however old they are.
    assert await push.prune_notifications(now_ms() + 31 * DAY_MS) == 3
    assert await listed(http, v3, token) == [(m5, False), (m4, False)]
    assert await unread(http, v3, token, room_id) == counts(2, 1)

    # A later receipt counts again from what is left, and gets the same as it would have.
    await read_up_to(http, v3, token, room_id, m4)
    assert await unread(http, v3, token, room_id) == counts(1, 1)
    assert await push.prune_notifications(now_ms() + 31 * DAY_MS) == 1
    assert await listed(http, v3, token) == [(m5, False)]
    assert await unread(http, v3, token, room_id) == counts(1, 1)
    await read_up_to(http, v3, token, room_id, m5)
    assert await unread(http, v3, token, room_id) == counts(0, 0)


async def test_pruned_on_write_beyond_the_newest_kept(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    push = node.node.push
    push.notifications_kept = 2
    push.prune_interval_s = 0.0  # every write prunes
    room_id = await room_with_bob(http, v3, token, node)
    other_room = await room_with_bob(http, v3, token, node)
    m1 = await bob_says(node, room_id, "one", **MENTION)
    m2 = await bob_says(node, room_id, "two")
    # Another room that is never read: its notifications are unread and stay.
    o1 = await bob_says(node, other_room, "elsewhere", **MENTION)
    m3 = await bob_says(node, room_id, "three", **MENTION)
    m4 = await bob_says(node, room_id, "four")
    await read_up_to(http, v3, token, room_id, m2)
    assert await listed(http, v3, token) == [
        (m4, False),
        (m3, False),
        (o1, False),
        (m2, True),
        (m1, True),
    ]
    assert await unread(http, v3, token, room_id) == counts(2, 1)

    # The next notification prunes: the newest two are m5 and m4; of the rest only
    # the read ones (m2, m1) go.
    m5 = await bob_says(node, room_id, "five")
    assert await listed(http, v3, token) == [(m5, False), (m4, False), (m3, False), (o1, False)]
    assert await unread(http, v3, token, room_id) == counts(3, 1)
    assert await unread(http, v3, token, other_room) == counts(1, 1)

    # Reading past m3 makes it prunable at the next write; the counts stay right.
    await read_up_to(http, v3, token, room_id, m3)
    assert await unread(http, v3, token, room_id) == counts(2, 0)
    m6 = await bob_says(node, room_id, "six")
    assert await listed(http, v3, token) == [(m6, False), (m5, False), (m4, False), (o1, False)]
    assert await unread(http, v3, token, room_id) == counts(3, 0)
    assert await unread(http, v3, token, other_room) == counts(1, 1)


async def test_pruning_waits_for_the_interval(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    push = node.node.push
    push.notifications_kept = 0
    room_id = await room_with_bob(http, v3, token, node)
    m1 = await bob_says(node, room_id, "one")  # the first write prunes (nothing to prune)
    await read_up_to(http, v3, token, room_id, m1)
    m2 = await bob_says(node, room_id, "two")  # within the hour: m1 stays
    assert await listed(http, v3, token) == [(m2, False), (m1, True)]
    push.prune_interval_s = 0.0
    push._next_prune = 0.0  # the hour is up
    m3 = await bob_says(node, room_id, "three")
    assert await listed(http, v3, token) == [(m3, False), (m2, False)]
