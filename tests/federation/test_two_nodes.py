"""Two real Croft nodes federating on loopback: invite v2, make_join/send_join,
transactions both ways, state changes, and a leave. Everything goes through the
client API of each node and the signed federation API between them."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.federation.nodes import Client, owner_pair
from tests.interop.users import says

_txn = itertools.count()


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Client, Client]]:
    async with owner_pair(tmp_path) as clients:
        yield clients


@pytest.mark.parametrize("version", ["10", "11", "12"])
async def test_invite_join_and_talk_both_ways(pair: tuple[Client, Client], version: str) -> None:
    a, b = pair
    room = (
        await a.call("POST", "/createRoom", {"room_version": version, "name": "Croft to Croft"})
    )["room_id"]
    await a.send(room, "before the invite")
    await a.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": b.user_id})

    invite = await b.sync_until(lambda r: r.get("rooms", {}).get("invite", {}).get(room))
    names = [e for e in invite["invite_state"]["events"] if e["type"] == "m.room.name"]
    assert names and names[0]["content"]["name"] == "Croft to Croft"

    server_a = a.node.node.config.server_name
    joined = await b.call("POST", f"/join/{quote(room)}?server_name={quote(server_a)}", {})
    assert joined == {"room_id": room}
    # B holds the room's state now.
    name = await b.call("GET", f"/rooms/{quote(room)}/state/m.room.name")
    assert name == {"name": "Croft to Croft"}
    members = await b.call("GET", f"/rooms/{quote(room)}/joined_members")
    assert set(members["joined"]) == {a.user_id, b.user_id}

    # A learns of B's join over federation.
    await a.sync_until(
        lambda r: any(
            e["type"] == "m.room.member"
            and e["state_key"] == b.user_id
            and e["content"]["membership"] == "join"
            for e in r.get("rooms", {})
            .get("join", {})
            .get(room, {})
            .get("timeline", {})
            .get("events", [])
        )
    )

    await a.send(room, "hello from A")
    await b.sync_until(says(room, "hello from A"))
    await b.send(room, "hello from B")
    await a.sync_until(says(room, "hello from B"))

    # State travels too.
    await a.put_state(room, "m.room.topic", {"topic": "federated"})
    await b.wait_state(room, "m.room.topic", {"topic": "federated"}, within=20)

    # The same event ID on both sides, in the same order.
    page_a = await a.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=5")
    page_b = await b.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=5")
    ids_a = [e["event_id"] for e in page_a["chunk"]]
    ids_b = [e["event_id"] for e in page_b["chunk"]]
    assert ids_a[:3] == ids_b[:3]

    # B leaves; A sees it.
    await b.call("POST", f"/rooms/{quote(room)}/leave", {})
    members = await a.sync_until(
        lambda r: [
            e
            for e in r.get("rooms", {})
            .get("join", {})
            .get(room, {})
            .get("timeline", {})
            .get("events", [])
            if e["type"] == "m.room.member"
            and e["state_key"] == b.user_id
            and e["content"]["membership"] == "leave"
        ]
    )
    assert members


def membership_of(room: str, user_id: str, membership: str) -> Callable[[dict[str, Any]], bool]:
    """A /sync predicate: ``user_id``'s member event with ``membership`` in the room's
    timeline (joined rooms)."""

    def found(response: dict[str, Any]) -> bool:
        room_data = response.get("rooms", {}).get("join", {}).get(room, {})
        return any(
            e["type"] == "m.room.member"
            and e["state_key"] == user_id
            and e["content"].get("membership") == membership
            for e in room_data.get("timeline", {}).get("events", [])
        )

    return found


async def test_an_invite_is_rejected_through_the_inviting_server(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    room = (await a.call("POST", "/createRoom", {"name": "No thanks"}))["room_id"]
    await a.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": b.user_id})
    await b.sync_until(lambda r: r.get("rooms", {}).get("invite", {}).get(room))
    await b.call("POST", f"/rooms/{quote(room)}/leave", {})
    # B's /sync moves the room to "leave"; A's room shows the rejection.
    await b.sync_until(lambda r: room in r.get("rooms", {}).get("leave", {}))
    await a.sync_until(membership_of(room, b.user_id, "leave"))
    assert room not in (await b.call("GET", "/joined_rooms"))["joined_rooms"]


async def test_a_knock_is_let_in_and_a_join_by_alias(pair: tuple[Client, Client]) -> None:
    a, b = pair
    server_a = a.node.node.config.server_name
    room = (
        await a.call(
            "POST",
            "/createRoom",
            {
                "room_alias_name": "knockers",
                "initial_state": [
                    {
                        "type": "m.room.join_rules",
                        "state_key": "",
                        "content": {"join_rule": "knock"},
                    }
                ],
            },
        )
    )["room_id"]
    alias = quote(f"#knockers:{server_a}")
    # Joining without an invite is refused by A's auth rules, and B learns why.
    refused = await b.call("POST", f"/join/{alias}", {}, status=403)
    assert refused["errcode"] == "M_FORBIDDEN"
    assert await b.call("POST", f"/knock/{alias}", {}) == {"room_id": room}
    await a.sync_until(membership_of(room, b.user_id, "knock"))
    await a.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": b.user_id})
    await b.sync_until(lambda r: r.get("rooms", {}).get("invite", {}).get(room))
    assert await b.call("POST", f"/join/{alias}", {}) == {"room_id": room}
    await a.sync_until(membership_of(room, b.user_id, "join"))


async def test_redactions_travel_and_apply(pair: tuple[Client, Client]) -> None:
    a, b = pair
    room = (await a.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    server_a = a.node.node.config.server_name
    await b.call("POST", f"/join/{quote(room)}?server_name={quote(server_a)}", {})
    mine = await b.send(room, "B's regret")
    theirs = await a.send(room, "A's words")
    await a.sync_until(says(room, "B's regret"))
    await b.sync_until(says(room, "A's words"))
    # A message from another server notifies (a room of two: the one-to-one rule).
    full = await a.call("GET", "/sync")
    unread = full["rooms"]["join"][room]["unread_notifications"]
    assert unread["notification_count"] >= 1
    # B may redact its own message; A applies it. B may not redact A's (power 0).
    await b.call("PUT", f"/rooms/{quote(room)}/redact/{quote(mine)}/r{next(_txn)}", {})
    url = f"/rooms/{quote(room)}/redact/{quote(theirs)}/r{next(_txn)}"
    await b.call("PUT", url, {}, status=403)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen = await a.call("GET", f"/rooms/{quote(room)}/event/{quote(mine)}")
        if seen["content"] == {}:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("B's redaction was not applied on A")
    assert "redacted_because" in seen["unsigned"]
    kept = await a.call("GET", f"/rooms/{quote(room)}/event/{quote(theirs)}")
    assert kept["content"]["body"] == "A's words"
