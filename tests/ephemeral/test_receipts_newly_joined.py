"""Receipts of a room the user joined after ``since``: an incremental /sync gives the
room's current receipts (as an initial sync would, and as Synapse does), not only
those changed after ``since``; a room the user was already in still gets deltas.

Spec: content/client-server-api/modules/receipts.md "Client behaviour" (an initial
sync carries all receipts, later ones the changes); api/client-server/sync.yaml
(``rooms.join.*.ephemeral``).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import nio

from node.app import RunningNode
from node.events.room_versions import room_version
from node.rooms.creation import RoomRequest
from tests.conftest import OWNER, PASSWORD
from tests.ephemeral.conftest import BOB, OWNER_ID, call, ephemeral, of_type, send_text, sync
from tests.ephemeral.test_receipts import receipt


def receipts_of(response: Any, room_id: str) -> list[tuple[str, str, str]]:
    """(event_id, receipt_type, user_id) of every receipt in the room's m.receipt
    events, repeats kept."""
    out = []
    for event in of_type(ephemeral(response, room_id), "m.receipt"):
        for event_id, types in event["content"].items():
            for receipt_type, users in types.items():
                out.extend((event_id, receipt_type, user_id) for user_id in users)
    return sorted(out)


async def bobs_room(node: RunningNode) -> tuple[str, list[str]]:
    """A public room Bob made, with three of his messages."""
    rooms = node.node.rooms
    room_id = await rooms.create_room(
        RoomRequest(creator=BOB, room_version=room_version("12"), preset="public_chat")
    )
    sent = [
        await rooms.send(BOB, room_id, "m.room.message", {"msgtype": "m.text", "body": f"b{i}"})
        for i in range(3)
    ]
    return room_id, sent


async def test_a_room_joined_after_since_gets_its_current_receipts(
    http: aiohttp.ClientSession, v3: str, token: str, token2: str, node: RunningNode
) -> None:
    room_id, (_, b1, b2) = await bobs_room(node)
    receipts = node.node.receipts
    await receipts.post_receipt(room_id, BOB, "m.read", b1, None)
    await receipts.post_receipt(room_id, BOB, "m.read.private", b2, None)
    since = (await sync(http, v3, token2))["next_batch"]
    assert room_id not in (await sync(http, v3, token2, since)).get("rooms", {}).get("join", {})

    await call(http, "POST", f"{v3}/join/{room_id}", token, {})
    joined = await sync(http, v3, token2, since)
    assert room_id in joined["rooms"]["join"]
    # Bob's public receipt from before ``since``; never his private one.
    assert receipts_of(joined, room_id) == [(b1, "m.read", BOB)]

    # From then on only changes, as in any room.
    quiet = await sync(http, v3, token2, joined["next_batch"])
    assert receipts_of(quiet, room_id) == []
    await receipts.post_receipt(room_id, BOB, "m.read", b2, None)
    moved = await sync(http, v3, token2, quiet["next_batch"])
    assert receipts_of(moved, room_id) == [(b2, "m.read", BOB)]


async def test_receipts_made_around_the_join_are_all_there(
    http: aiohttp.ClientSession, v3: str, token: str, token2: str, node: RunningNode
) -> None:
    room_id, (b0, b1, _) = await bobs_room(node)
    receipts = node.node.receipts
    await receipts.post_receipt(room_id, BOB, "m.read", b0, None)
    since = (await sync(http, v3, token2))["next_batch"]
    await receipts.post_receipt(room_id, BOB, "m.read", b1, None)  # after since, before join
    await call(http, "POST", f"{v3}/join/{room_id}", token, {})
    mine = await send_text(http, v3, token, room_id, "hello bob")
    await receipt(http, v3, token, room_id, mine)  # after the join
    joined = await sync(http, v3, token2, since)
    assert receipts_of(joined, room_id) == sorted([(b1, "m.read", BOB), (mine, "m.read", OWNER_ID)])


async def test_a_rejoined_room_gets_its_current_receipts(
    http: aiohttp.ClientSession, v3: str, token: str, token2: str, node: RunningNode
) -> None:
    created = await call(http, "POST", f"{v3}/createRoom", token, {"preset": "public_chat"})
    room_id = created["room_id"]
    first = await send_text(http, v3, token, room_id, "first")
    await node.node.rooms.send(BOB, room_id, "m.room.member", {"membership": "join"}, state_key=BOB)
    await call(http, "POST", f"{v3}/rooms/{room_id}/leave", token, {})
    await node.node.receipts.post_receipt(room_id, BOB, "m.read", first, None)
    since = (await sync(http, v3, token2))["next_batch"]
    await call(http, "POST", f"{v3}/join/{room_id}", token, {})
    rejoined = await sync(http, v3, token2, since)
    assert receipts_of(rejoined, room_id) == [(first, "m.read", BOB)]


async def test_a_membership_change_while_joined_sends_only_deltas(
    http: aiohttp.ClientSession, v3: str, token: str, token2: str, node: RunningNode
) -> None:
    room_id, (b0, _, _) = await bobs_room(node)
    await call(http, "POST", f"{v3}/join/{room_id}", token, {})
    await node.node.receipts.post_receipt(room_id, BOB, "m.read", b0, None)
    since = (await sync(http, v3, token2))["next_batch"]
    # A new display name is a new m.room.member event (join to join) in the room.
    me = OWNER_ID.replace("@", "%40").replace(":", "%3A")
    await call(http, "PUT", f"{v3}/profile/{me}/displayname", token, {"displayname": "Ally"})
    changed = await sync(http, v3, token2, since)
    assert room_id in changed["rooms"]["join"]
    assert receipts_of(changed, room_id) == []


async def test_nio_gets_the_receipts_of_a_room_it_joins(client_url: str, node: RunningNode) -> None:
    room_id, (_, b1, _) = await bobs_room(node)
    await node.node.receipts.post_receipt(room_id, BOB, "m.read", b1, None)
    client = nio.AsyncClient(client_url, OWNER)
    try:
        assert isinstance(await client.login(PASSWORD, device_name="nio"), nio.LoginResponse)
        first = await client.sync(timeout=0)
        assert isinstance(first, nio.SyncResponse), first
        assert room_id not in first.rooms.join
        assert isinstance(await client.join(room_id), nio.JoinResponse)
        later = await client.sync(timeout=0, since=first.next_batch)
        assert isinstance(later, nio.SyncResponse), later
        found = [
            (r.event_id, r.receipt_type, r.user_id)
            for event in later.rooms.join[room_id].ephemeral
            if isinstance(event, nio.ReceiptEvent)
            for r in event.receipts
        ]
        assert found == [(b1, "m.read", BOB)]
    finally:
        await client.close()
