"""The total unread count a push gateway is given (``counts.unread``, push_gateway.yaml)
covers the rooms the user is joined to: a room it left no longer counts."""

from __future__ import annotations

import aiohttp

from node.app import RunningNode
from tests.client import call
from tests.conftest import OWNER, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"
BOB = "@bob:remote.example"


async def test_total_unread_counts_joined_rooms_only(
    http: aiohttp.ClientSession, client_url: str, token: str, node: RunningNode
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    rooms = node.node.rooms
    ids = []
    for name in ("kept", "left"):
        body = {"name": name, "preset": "public_chat"}
        room = (await call(http, "POST", f"{v3}/createRoom", token, body))["room_id"]
        await rooms.send(BOB, room, "m.room.member", {"membership": "join"}, state_key=BOB)
        for i in range(2):  # a room of two: every message notifies
            await rooms.send(BOB, room, "m.room.message", {"msgtype": "m.text", "body": f"{i}"})
        ids.append(room)
    store = node.node.push.store
    assert await store.get_total_unread(OWNER_ID) == 4
    await call(http, "POST", f"{v3}/rooms/{ids[1]}/leave", token, {})
    assert await store.get_total_unread(OWNER_ID) == 2
