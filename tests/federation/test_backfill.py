"""Backfill between two real Croft nodes on loopback: B joins A's room after its
history was written and pages /messages back to the create event, over /backfill.

Spec: server-server-api.md "Backfilling and retrieving missing events";
client-server message_pagination.yaml (GET /rooms/{roomId}/messages).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from node.client_api.paging import parse_position
from node.errors import MatrixError
from node.events.hashing import add_content_hash, compute_event_id
from node.events.pdu import MEMBER, Event
from node.events.room_versions import room_version
from node.events.signing import sign_event
from node.federation.backfill import dag_order
from tests.federation.nodes import Client, owner_pair, resolver_of

NAME = "m.room.name"


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Client, Client]]:
    async with owner_pair(tmp_path) as (ca, cb):
        cb.node.node.backfiller.retry_after = 0.0  # a failed server may be asked again at once
        yield ca, cb


def room_reads(client: Client) -> list[str]:
    """The paths of the requests for room history (/backfill, /state_ids, /state,
    /event_auth, /event) that the client's node makes from now on. (The resolver's
    counts would also see the EDUs a join sets off in the background.)"""
    federation = client.node.node.federation_client
    request = federation.request
    paths: list[str] = []

    async def recording(method: str, destination: str, path: str, **kw: Any) -> Any:
        if any(part in path for part in ("/backfill/", "/state", "/event")):
            paths.append(path)
        return await request(method, destination, path, **kw)

    federation.request = recording  # type: ignore[method-assign]
    return paths


async def join(b: Client, a: Client, room: str) -> None:
    server_a = a.node.node.config.server_name
    assert await b.call("POST", f"/join/{quote(room)}?server_name={quote(server_a)}", {}) == {
        "room_id": room
    }


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


async def test_whole_history_over_backfill(pair: tuple[Client, Client]) -> None:
    a, b = pair
    room = (await a.call("POST", "/createRoom", {"preset": "public_chat", "name": "name 0"}))[
        "room_id"
    ]
    sent: dict[str, str] = {}
    for i in range(150):
        if i in (40, 80, 120):
            await a.call("PUT", f"/rooms/{quote(room)}/state/{NAME}", {"name": f"name {i // 40}"})
        sent[f"m{i}"] = await a.send(room, f"m{i}")
    await join(b, a, room)

    expected = await a.history(room, 50)
    got = await b.history(room, 30)
    assert [e["event_id"] for e in got] == [e["event_id"] for e in expected]
    assert bodies(got) == [f"m{i}" for i in reversed(range(150))]
    assert got[-1]["type"] == "m.room.create"
    assert got[0]["type"] == MEMBER and got[0]["state_key"] == b.user_id
    assert [e["content"]["name"] for e in got if e["type"] == NAME] == [
        "name 3",
        "name 2",
        "name 1",
        "name 0",
    ]

    # The room name at old events: in /context and in the state groups.
    states = b.node.node.states
    for body, name in (
        ("m10", "name 0"),
        ("m50", "name 1"),
        ("m119", "name 2"),
        ("m149", "name 3"),
    ):
        event_id = sent[body]
        context = await b.call("GET", f"/rooms/{quote(room)}/context/{quote(event_id)}?limit=0")
        assert context["event"]["event_id"] == event_id
        names = [e["content"]["name"] for e in context["state"] if e["type"] == NAME]
        assert names == [name], body
        after = await states.state_after(event_id)
        assert after is not None
        found = await b.node.node.events.get_event(after[(NAME, "")])
        assert found is not None and found.event.content["name"] == name

    # Everything is stored now: paging again asks A for nothing.
    reads = room_reads(b)
    again = await b.history(room, 40)
    assert [e["event_id"] for e in again] == [e["event_id"] for e in got]
    assert reads == []

    # History never shows in /sync: an incremental sync has no old message.
    first = await b.call("GET", "/sync?timeout=0")
    later = await b.call("GET", f"/sync?timeout=0&since={first['next_batch']}")
    timeline = later.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
    assert bodies(timeline.get("events", [])) == []


async def test_unreachable_server_gives_a_short_page(pair: tuple[Client, Client]) -> None:
    a, b = pair
    room = (await a.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    for i in range(30):
        await a.send(room, f"m{i}")
    await join(b, a, room)
    server_a = a.node.node.config.server_name

    resolver_of(b.node).blocked.add(server_a)
    page = await b.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=20")
    assert [e["type"] for e in page["chunk"]] == [MEMBER]  # our join: all that is stored
    # More may come later, so the page has an end; the next page is empty and final.
    more = await b.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=20&from={page['end']}")
    assert more["chunk"] == [] and "end" not in more

    # A is back: the history comes.
    resolver_of(b.node).blocked.clear()
    got = await b.history(room, 20)
    assert bodies(got) == [f"m{i}" for i in reversed(range(30))]
    assert got[-1]["type"] == "m.room.create"


async def test_history_hidden_before_the_join_is_not_fetched(pair: tuple[Client, Client]) -> None:
    a, b = pair
    body = {
        "preset": "public_chat",
        "initial_state": [
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "joined"},
            }
        ],
    }
    room = (await a.call("POST", "/createRoom", body))["room_id"]
    for i in range(10):
        await a.send(room, f"before {i}")
    await join(b, a, room)

    reads = room_reads(b)
    page = await b.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=20")
    assert [e["type"] for e in page["chunk"]] == [MEMBER]
    assert "end" not in page
    assert reads == []


def forged(a: Client, model: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """An event like ``model`` with ``changes``, hashed and signed with A's key."""
    key = a.node.node.server_key
    pdu = {k: v for k, v in model.items() if k not in ("hashes", "signatures", "unsigned")}
    pdu.update(changes)
    version = room_version("12")
    return sign_event(add_content_hash(pdu), key.server_name, key.signing_key, version)


async def test_bad_events_in_a_backfill_answer(pair: tuple[Client, Client]) -> None:
    """What a server answers is checked: an event with a bad signature, of another
    room or on top of another room's event is dropped, one that fails the auth rules
    is stored as rejected and never shown; the rest of the answer is stored."""
    a, b = pair
    room = (await a.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    other = (await a.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    ids = [await a.send(room, f"m{i}") for i in range(20)]
    elsewhere = await a.send(other, "in another room")
    await join(b, a, room)
    await join(b, a, other)
    events_b = b.node.node.events
    b_in_other = (await events_b.get_current_state_ids(other))[(MEMBER, b.user_id)]

    events_a = a.node.node.events
    model = (await events_a.get_event(ids[10])).event.raw  # type: ignore[union-attr]
    server_a = a.node.node.config.server_name
    # Sent by a user who is not in the room: fails the auth rules.
    intruder = forged(a, model, sender=f"@mallory:{server_a}", content={"body": "intruder"})
    intruder_id = compute_event_id(intruder, room_version("12"))
    # A signature that does not verify.
    bad_sig = forged(a, model, content={"msgtype": "m.text", "body": "bad signature"})
    bad_sig["signatures"] = {server_a: dict.fromkeys(bad_sig["signatures"][server_a], "AAAA")}
    bad_sig_id = compute_event_id(bad_sig, room_version("12"))
    wrong_room = (await events_a.get_event(elsewhere)).event.raw  # type: ignore[union-attr]
    # Its prev event is in another room (one B knows: its own join there).
    crossed = forged(a, model, prev_events=[b_in_other], content={"body": "crossed"})
    crossed_id = compute_event_id(crossed, room_version("12"))

    federation = b.node.node.federation_client
    request = federation.request

    async def tampering(method: str, destination: str, path: str, **kw: Any) -> Any:
        answer = await request(method, destination, path, **kw)
        if "/backfill/" in path:
            answer = {**answer, "pdus": [*answer["pdus"], intruder, bad_sig, wrong_room, crossed]}
        return answer

    federation.request = tampering  # type: ignore[method-assign]
    got = await b.history(room, 50)
    assert bodies(got) == [f"m{i}" for i in reversed(range(20))]
    assert got[-1]["type"] == "m.room.create"
    stored = await events_b.get_event(intruder_id)
    assert stored is not None and stored.event.rejected_reason is not None
    assert await events_b.get_event(bad_sig_id) is None
    assert await events_b.get_event(elsewhere) is None
    assert await events_b.get_event(crossed_id) is None


# -- pure parts ---------------------------------------------------------------------------


def _ev(event_id: str, depth: int, prevs: list[str], ts: int = 0) -> Event:
    raw = {"type": "m.room.message", "depth": depth, "prev_events": prevs, "origin_server_ts": ts}
    return Event(event_id, room_version("12"), raw)


@pytest.mark.parametrize(
    ("events", "order"),
    [
        # A line given newest first comes out oldest first.
        ([_ev("$c", 3, ["$b"]), _ev("$b", 2, ["$a"]), _ev("$a", 1, [])], ["$a", "$b", "$c"]),
        # A fork: both branches before the merge, the shallower first.
        (
            [
                _ev("$m", 4, ["$x", "$y"]),
                _ev("$y", 3, ["$r"]),
                _ev("$x", 2, ["$r"]),
                _ev("$r", 1, ["$unknown"]),
            ],
            ["$r", "$x", "$y", "$m"],
        ),
        # A depth that lies does not put an event before its prev event.
        ([_ev("$b", 1, ["$a"]), _ev("$a", 5, [])], ["$a", "$b"]),
        # A cycle (only forged events make one) keeps every event, by depth.
        ([_ev("$b", 2, ["$a"]), _ev("$a", 1, ["$b"])], ["$a", "$b"]),
    ],
)
def test_dag_order(events: list[Event], order: list[str]) -> None:
    assert [e.event_id for e in dag_order(events)] == order


@pytest.mark.parametrize(
    ("token", "position"), [("p-12", -12), ("p0", 0), ("p7", 7), (f"p-{2**62}", -(2**62))]
)
def test_negative_positions_are_tokens(token: str, position: int) -> None:
    assert parse_position(token) == position


@pytest.mark.parametrize("token", ["p-", "p--1", "p+1", "p-1.5", f"p-{2**62 + 1}", "p-٣"])
def test_bad_positions(token: str) -> None:
    with pytest.raises(MatrixError):
        parse_position(token)
