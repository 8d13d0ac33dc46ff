"""EDUs (node/federation/edus.py, outbound_edus.py): typing, receipts and presence from
a real peer over PUT /send reach the owner's /sync, with the spec's checks; the owner's
own typing, receipts and presence go out to the servers in the room; malformed EDUs
are dropped without harm (spec: server-server-api.md "EDUs", "Typing Notifications",
"Receipts", "Presence")."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.federation.sender import FederationSender
from tests.federation.edu_nodes import (
    Peer,
    create_room,
    join_locally,
    send_edus,
    shared_rooms,
    start_peer,
)
from tests.federation.peer import FakePeer, HttpTransport


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[tuple[Peer, Peer]]:
    async with AsyncExitStack() as stack:
        a = await start_peer(stack, tmp_path, "a")
        b = await start_peer(stack, tmp_path, "b")
        yield a, b


def ephemeral(response: Any, room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = response.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]


def typing_edu(room_id: str, user_id: str, typing: bool = True) -> dict[str, Any]:
    content = {"room_id": room_id, "user_id": user_id, "typing": typing}
    return {"edu_type": "m.typing", "content": content}


def receipt_edu(room_id: str, user_id: str, event_id: str, rtype: str = "m.read") -> Any:
    receipt = {"event_ids": [event_id], "data": {"ts": 1234}}
    return {"edu_type": "m.receipt", "content": {room_id: {rtype: {user_id: receipt}}}}


async def test_typing_and_receipts_from_a_peer(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    _, room = await shared_rooms(a, b)
    other_room = await create_room(b)
    since = (await b.sync())["next_batch"]
    mallory = "@mallory:127.0.0.1:1"
    await send_edus(
        a,
        b,
        typing_edu(room, mallory),  # not a user of the origin: dropped
        typing_edu(other_room, a.user_id),  # not in that room: dropped
        typing_edu(room, a.user_id),
    )
    response = await b.sync_until(since, lambda r: ephemeral(r, room, "m.typing"))
    assert ephemeral(response, room, "m.typing")[0]["content"] == {"user_ids": [a.user_id]}
    assert not ephemeral(response, other_room, "m.typing")
    since = response["next_batch"]
    await send_edus(a, b, typing_edu(room, a.user_id, False))
    response = await b.sync_until(since, lambda r: ephemeral(r, room, "m.typing"))
    assert ephemeral(response, room, "m.typing")[0]["content"] == {"user_ids": []}
    since = response["next_batch"]

    sent = await b.call(
        "PUT", f"/rooms/{room}/send/m.room.message/{uuid.uuid4().hex}", {"body": "hi"}
    )
    event_id = sent["event_id"]
    await send_edus(
        a,
        b,
        receipt_edu(room, a.user_id, event_id, "m.read.private"),  # never federated
        receipt_edu(room, mallory, event_id),
        receipt_edu(other_room, a.user_id, event_id),  # the event is not in that room
        receipt_edu(room, a.user_id, event_id),
    )
    response = await b.sync_until(since, lambda r: ephemeral(r, room, "m.receipt"))
    receipts = [e["content"] for e in ephemeral(response, room, "m.receipt")]
    assert receipts == [{event_id: {"m.read": {a.user_id: {"ts": 1234}}}}]
    assert not ephemeral(response, other_room, "m.receipt")


async def test_presence_from_a_peer(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    await shared_rooms(a, b)
    since = (await b.sync())["next_batch"]
    push = [
        {"user_id": "@mallory:127.0.0.1:1", "presence": "online", "last_active_ago": 0},
        {"user_id": a.user_id, "presence": "dancing", "last_active_ago": 0},
        {
            "user_id": a.user_id,
            "presence": "online",
            "last_active_ago": 5000,
            "currently_active": True,
            "status_msg": "gardening",
        },
    ]
    await send_edus(a, b, {"edu_type": "m.presence", "content": {"push": push}})

    def has_a(r: Any) -> bool:
        return any(e["sender"] == a.user_id for e in r.get("presence", {}).get("events", []))

    response = await b.sync_until(since, has_a)
    events = {e["sender"]: e["content"] for e in response["presence"]["events"]}
    assert "@mallory:127.0.0.1:1" not in events
    content = events[a.user_id]
    assert content["presence"] == "online" and content["status_msg"] == "gardening"
    assert content["currently_active"] is True and content["last_active_ago"] >= 5000


@pytest.mark.parametrize(
    "edu",
    [
        None,
        [],
        {"edu_type": 5, "content": {}},
        {"edu_type": "m.typing", "content": []},
        {"edu_type": "m.typing", "content": {"room_id": "!r:x", "user_id": 7, "typing": True}},
        {"edu_type": "m.typing", "content": {"room_id": "bad", "user_id": "@a:x", "typing": 1}},
        {"edu_type": "m.receipt", "content": {"not-a-room": {}}},
        {"edu_type": "m.receipt", "content": {"!r:x": {"m.read": {"@a:x": {"event_ids": 1}}}}},
        {"edu_type": "m.presence", "content": {"push": {}}},
        {"edu_type": "m.presence", "content": {"push": [5, {"user_id": "@a:x"}]}},
        {"edu_type": "m.direct_to_device", "content": {"sender": "@a:x", "type": "t"}},
        {
            "edu_type": "m.direct_to_device",
            "content": {"sender": "@a:x", "type": "t", "message_id": "", "messages": {}},
        },
        {
            "edu_type": "m.direct_to_device",
            "content": {"sender": "@a:x", "type": "t", "message_id": "m", "messages": {"@u:y": []}},
        },
        {"edu_type": "m.device_list_update", "content": {"user_id": "@a:x", "device_id": "D"}},
        {
            "edu_type": "m.device_list_update",
            "content": {"user_id": "@a:x", "device_id": "D", "stream_id": 1, "prev_id": ["1"]},
        },
        {
            "edu_type": "m.device_list_update",
            "content": {
                "user_id": "@a:x",
                "device_id": "D",
                "stream_id": 1,
                "keys": {"user_id": "@b:x"},
            },
        },
        {
            "edu_type": "m.signing_key_update",
            "content": {
                "user_id": "@a:x",
                "master_key": {"user_id": "@a:x", "usage": ["self_signing"]},
            },
        },
        {"edu_type": "org.example.unknown", "content": {}},
    ],
)
async def test_malformed_edus_are_dropped(tmp_path: Path, edu: Any) -> None:
    async with AsyncExitStack() as stack:
        b = await start_peer(stack, tmp_path, "b")
        before = b.node.notifier.current_token()
        await b.node.edu_handler.handle("x", edu)  # must not raise
        assert b.node.notifier.current_token() == before  # and changed nothing


async def test_the_owners_typing_receipts_and_presence_go_out(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        b = await start_peer(stack, tmp_path, "b")
        fake = FakePeer()
        url = await fake.start()
        stack.push_async_callback(fake.stop)
        fake_server = url.removeprefix("http://")
        carol = f"@carol:{fake_server}"
        session = await stack.enter_async_context(aiohttp.ClientSession())
        transport = HttpTransport(session, {fake_server: url})
        sender = FederationSender(b.node.db, transport, b.server_name)
        await sender.start()
        stack.push_async_callback(sender.close)
        b.node.outbound_edus.sender = sender
        room = await create_room(b)
        await join_locally(b, room, carol)

        def edus_of(edu_type: str) -> list[dict[str, Any]]:
            return [e["content"] for e in fake.edus if e["edu_type"] == edu_type]

        await b.call("PUT", f"/rooms/{room}/typing/{b.user_id}", {"typing": True, "timeout": 5000})
        await fake.wait_for(lambda p: bool(edus_of("m.typing")))
        assert edus_of("m.typing")[0] == {"room_id": room, "user_id": b.user_id, "typing": True}

        sent = await b.call(
            "PUT", f"/rooms/{room}/send/m.room.message/{uuid.uuid4().hex}", {"body": "hi"}
        )
        event_id = sent["event_id"]
        await b.call("POST", f"/rooms/{room}/receipt/m.read.private/{event_id}", {})
        await b.call("POST", f"/rooms/{room}/receipt/m.read/{event_id}", {})
        await fake.wait_for(lambda p: bool(edus_of("m.receipt")))
        receipts = edus_of("m.receipt")
        assert len(receipts) == 1  # the private receipt stayed home
        read = receipts[0][room]["m.read"][b.user_id]
        assert read["event_ids"] == [event_id] and isinstance(read["data"]["ts"], int)

        await b.call("PUT", f"/presence/{b.user_id}/status", {"presence": "unavailable"})
        await fake.wait_for(
            lambda p: any(
                u["presence"] == "unavailable" for e in edus_of("m.presence") for u in e["push"]
            )
        )
        update = [u for e in edus_of("m.presence") for u in e["push"]][-1]
        assert update["user_id"] == b.user_id and "last_active_ago" in update
