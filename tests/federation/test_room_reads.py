"""The endpoints that let another server read a room's DAG (node/federation/room_reads.py),
between two real nodes on loopback: node B sends real signed requests with its
FederationClient to node A, which checks them with the real X-Matrix middleware.

Spec: content/server-server-api.md "Retrieving events", "Backfilling and retrieving
missing events", "Retrieving event authorisation information", "Server Access Control
Lists (ACLs)"; api/server-server/events.yaml, backfill.yaml, event_auth.yaml.

B's user enters A's room through A's room service (as in
tests/server/test_history_visibility.py): the events are A's own, which is all these
read endpoints look at.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from node.app import RunningNode
from node.events.redaction import redact
from node.events.room_versions import room_version
from node.federation.common import RemoteError
from node.rooms.creation import RoomRequest
from tests.federation.nodes import croft_node

V1 = "/_matrix/federation/v1"


@dataclass
class Pair:
    a: RunningNode  # serves the room
    b: RunningNode  # asks
    room: str

    @property
    def alice(self) -> str:
        return f"@alice:{self.a.node.config.server_name}"

    @property
    def bob(self) -> str:
        return f"@bob:{self.b.node.config.server_name}"

    async def get(self, path: str, **query: Any) -> Any:
        client = self.b.node.federation_client
        return await client.get_json(self.a.node.config.server_name, V1 + path, query=query or None)

    async def post(self, path: str, body: object) -> Any:
        client = self.b.node.federation_client
        return await client.post_json(self.a.node.config.server_name, V1 + path, body)

    async def error(self, path: str, body: object | None = None, **query: Any) -> tuple[int, str]:
        with pytest.raises(RemoteError) as caught:
            if body is None:
                await self.get(path, **query)
            else:
                await self.post(path, body)
        return caught.value.status, caught.value.errcode

    async def say(self, body: str, sender: str | None = None) -> str:
        content = {"msgtype": "m.text", "body": body}
        return await self.a.node.rooms.send(
            sender or self.alice, self.room, "m.room.message", content
        )

    async def state(self, etype: str, content: dict[str, Any], key: str = "") -> str:
        return await self.a.node.rooms.send(self.alice, self.room, etype, content, state_key=key)

    async def join_bob(self) -> str:
        return await self.a.node.rooms.set_membership(self.bob, self.room, self.bob, "join")

    async def stored(self, event_id: str) -> dict[str, Any]:
        raw = await self.a.node.events.get_event_json(event_id)
        assert raw is not None
        return json.loads(raw)

    async def depth(self, event_id: str) -> int:
        return int((await self.stored(event_id))["depth"])


def q(value: str) -> str:
    return quote(value, safe="")


@pytest.fixture(params=["12", "11"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    """Nodes A and B; on A a public room of Alice's (B not in it yet)."""
    async with croft_node(tmp_path, "a") as a, croft_node(tmp_path, "b") as b:
        alice = f"@alice:{a.node.config.server_name}"
        room = await a.node.rooms.create_room(
            RoomRequest(
                creator=alice, room_version=room_version(request.param), preset="public_chat"
            )
        )
        yield Pair(a, b, room)


async def walk_auth_chain(p: Pair, seeds: list[str]) -> set[str]:
    """The auth chain of ``seeds`` computed from the stored JSON (the test's own walk)."""
    chain: set[str] = set()
    todo = list(seeds)
    version = await p.a.node.events.get_room_version(p.room)
    assert version is not None
    while todo:
        event = await p.stored(todo.pop())
        auth = list(event.get("auth_events", []))
        if version.room_id_is_create_event_id and event["type"] != "m.room.create":
            auth.append("$" + p.room[1:])
        for a in auth:
            if a not in chain:
                chain.add(a)
                todo.append(a)
    return chain


# -- membership and ACL checks ---------------------------------------------------------------


async def test_a_server_not_in_the_room_is_refused_then_served(pair: Pair) -> None:
    p = pair
    msg = await p.say("hello")
    room = q(p.room)
    refused = [
        p.error(f"/event/{q(msg)}"),
        p.error(f"/state_ids/{room}", event_id=msg),
        p.error(f"/state/{room}", event_id=msg),
        p.error(f"/event_auth/{room}/{q(msg)}"),
        p.error(f"/backfill/{room}", v=msg, limit="5"),
        p.error(f"/get_missing_events/{room}", {"earliest_events": [], "latest_events": [msg]}),
    ]
    for call in refused:
        assert await call == (403, "M_FORBIDDEN")
    await p.join_bob()
    answer = await p.get(f"/event/{q(msg)}")
    assert answer["origin"] == p.a.node.config.server_name
    assert isinstance(answer["origin_server_ts"], int)
    assert answer["pdus"] == [await p.stored(msg)]
    # Once Bob leaves, B is refused again.
    await p.a.node.rooms.set_membership(p.bob, p.room, p.bob, "leave")
    assert await p.error(f"/event/{q(msg)}") == (403, "M_FORBIDDEN")


async def test_world_readable_rooms_are_served_to_any_server(pair: Pair) -> None:
    p = pair
    msg = await p.say("public history")
    assert await p.error(f"/event/{q(msg)}") == (403, "M_FORBIDDEN")
    await p.state("m.room.history_visibility", {"history_visibility": "world_readable"})
    assert (await p.get(f"/event/{q(msg)}"))["pdus"] == [await p.stored(msg)]
    ids = await p.get(f"/state_ids/{q(p.room)}", event_id=msg)
    assert ids["pdu_ids"]


async def test_server_acls_deny_with_403(pair: Pair) -> None:
    p = pair
    await p.join_bob()
    msg = await p.say("hello")
    room = q(p.room)
    gme = {"earliest_events": [], "latest_events": [msg]}

    async def all_refused() -> None:
        for call in [
            p.error(f"/event/{q(msg)}"),
            p.error(f"/state_ids/{room}", event_id=msg),
            p.error(f"/state/{room}", event_id=msg),
            p.error(f"/event_auth/{room}/{q(msg)}"),
            p.error(f"/backfill/{room}", v=msg, limit="5"),
            p.error(f"/get_missing_events/{room}", gme),
        ]:
            assert await call == (403, "M_FORBIDDEN")

    # Both nodes are 127.0.0.1:<port>; the port is not considered.
    await p.state("m.room.server_acl", {"allow": ["*"], "deny": ["127.0.0.1"]})
    await all_refused()
    await p.state("m.room.server_acl", {"allow": ["*"], "allow_ip_literals": False})
    await all_refused()
    await p.state("m.room.server_acl", {"allow": ["127.0.0.*"], "deny": ["evil.example"]})
    assert (await p.get(f"/event/{q(msg)}"))["pdus"]
    assert (await p.post(f"/get_missing_events/{room}", gme))["events"] is not None


# -- /event --------------------------------------------------------------------------------------


async def test_event_unknown_or_malformed_is_404(pair: Pair) -> None:
    p = pair
    await p.join_bob()
    assert await p.error("/event/" + q("$" + "A" * 43)) == (404, "M_NOT_FOUND")
    assert await p.error("/event/not-an-event-id") == (404, "M_NOT_FOUND")
    assert await p.error("/event/" + q("$x:y\u00e9\x00")) == (404, "M_NOT_FOUND")


async def test_event_redacted_here_is_served_redacted(pair: Pair) -> None:
    p = pair
    await p.join_bob()
    msg = await p.say("oops")
    await p.a.node.rooms.send(p.alice, p.room, "m.room.redaction", {}, redacts=msg)
    served = (await p.get(f"/event/{q(msg)}"))["pdus"][0]
    version = await p.a.node.events.get_room_version(p.room)
    assert version is not None
    assert served == redact(await p.stored(msg), version)
    assert "body" not in served["content"]
    assert "unsigned" not in served


# -- history visibility for servers ---------------------------------------------------------------


async def test_joined_history_is_redacted_for_servers_not_joined_at_the_event(pair: Pair) -> None:
    p = pair
    hv = await p.state("m.room.history_visibility", {"history_visibility": "joined"})
    secret = await p.say("before bob")
    join = await p.join_bob()
    later = await p.say("after bob")
    version = await p.a.node.events.get_room_version(p.room)
    assert version is not None

    served = (await p.get(f"/event/{q(secret)}"))["pdus"][0]
    assert served == redact(await p.stored(secret), version)
    assert served["content"] == {}
    assert (await p.get(f"/event/{q(later)}"))["pdus"] == [await p.stored(later)]

    back = await p.get(f"/backfill/{q(p.room)}", v=later, limit="4")
    by_id = {pdu_id(pdu, version): pdu for pdu in back["pdus"]}
    assert list(by_id) == [later, join, secret, hv]
    assert by_id[later] == await p.stored(later)
    assert by_id[join] == await p.stored(join)  # Bob is joined in the state after his join
    assert by_id[secret]["content"] == {}

    missing = await p.post(
        f"/get_missing_events/{q(p.room)}",
        {"earliest_events": [], "latest_events": [later], "limit": 2},
    )
    assert [pdu_id(e, version) for e in missing["events"]] == [secret, join]
    assert missing["events"][0]["content"] == {}
    assert missing["events"][1] == await p.stored(join)


async def test_invited_history_is_visible_from_the_invite(pair: Pair) -> None:
    p = pair
    await p.state("m.room.history_visibility", {"history_visibility": "invited"})
    before = await p.say("before the invite")
    # Through the room service directly: Bob is a stand-in with no account on B, so
    # B would refuse to countersign a real invite v2.
    await p.state("m.room.member", {"membership": "invite"}, p.bob)
    during = await p.say("while invited")
    await p.join_bob()
    assert (await p.get(f"/event/{q(before)}"))["pdus"][0]["content"] == {}
    assert (await p.get(f"/event/{q(during)}"))["pdus"] == [await p.stored(during)]


def pdu_id(pdu: dict[str, Any], version: Any) -> str:
    from node.events.hashing import compute_event_id

    return compute_event_id(pdu, version)


# -- /state and /state_ids ------------------------------------------------------------------------


async def test_state_ids_is_the_state_before_the_event_with_its_auth_chain(pair: Pair) -> None:
    p = pair
    await p.join_bob()
    first_topic = await p.state("m.room.topic", {"topic": "one"})
    second_topic = await p.state("m.room.topic", {"topic": "two"})
    msg = await p.say("hi")

    at_topic = await p.get(f"/state_ids/{q(p.room)}", event_id=second_topic)
    before = await p.a.node.states.state_before(second_topic)
    assert before is not None
    assert sorted(at_topic["pdu_ids"]) == sorted(before.values())
    assert first_topic in at_topic["pdu_ids"]
    assert second_topic not in at_topic["pdu_ids"]
    chain = set(at_topic["auth_chain_ids"])
    assert chain == await walk_auth_chain(p, at_topic["pdu_ids"])
    assert len(chain) == len(at_topic["auth_chain_ids"])

    at_msg = await p.get(f"/state_ids/{q(p.room)}", event_id=msg)
    current = await p.a.node.events.get_current_state_ids(p.room)
    assert sorted(at_msg["pdu_ids"]) == sorted(current.values())
    assert second_topic in at_msg["pdu_ids"]


async def test_state_serves_the_stored_pdus(pair: Pair) -> None:
    p = pair
    await p.join_bob()
    msg = await p.say("hi")
    ids = await p.get(f"/state_ids/{q(p.room)}", event_id=msg)
    full = await p.get(f"/state/{q(p.room)}", event_id=msg)
    assert full["pdus"] == [await p.stored(i) for i in ids["pdu_ids"]]
    assert full["auth_chain"] == [await p.stored(i) for i in ids["auth_chain_ids"]]


async def test_state_bad_requests(pair: Pair) -> None:
    p = pair
    await p.join_bob()
    msg = await p.say("hi")
    room = q(p.room)
    assert await p.error(f"/state_ids/{room}") == (400, "M_MISSING_PARAM")
    assert await p.error(f"/state/{room}", event_id="") == (400, "M_MISSING_PARAM")
    assert await p.error(f"/state_ids/{room}", event_id="$" + "B" * 43) == (404, "M_NOT_FOUND")
    assert await p.error(f"/state_ids/{room}", event_id="garbage") == (404, "M_NOT_FOUND")
    assert await p.error(f"/state_ids/{q('!nope:x')}", event_id=msg) == (404, "M_NOT_FOUND")
    assert await p.error("/state_ids/not-a-room", event_id=msg) == (404, "M_NOT_FOUND")
    # An event of another room.
    other = await p.a.node.rooms.create_room(
        RoomRequest(creator=p.alice, room_version=room_version("12"), preset="public_chat")
    )
    other_msg = await p.a.node.rooms.send(
        p.alice, other, "m.room.message", {"msgtype": "m.text", "body": "x"}
    )
    assert await p.error(f"/state_ids/{room}", event_id=other_msg) == (404, "M_NOT_FOUND")
    assert await p.error(f"/event_auth/{room}/{q(other_msg)}") == (404, "M_NOT_FOUND")


# -- /event_auth -------------------------------------------------------------------------------


async def test_event_auth_is_the_auth_chain(pair: Pair) -> None:
    p = pair
    join = await p.join_bob()
    msg = await p.say("from bob", sender=p.bob)
    answer = await p.get(f"/event_auth/{q(p.room)}/{q(msg)}")
    version = await p.a.node.events.get_room_version(p.room)
    assert version is not None
    ids = [pdu_id(e, version) for e in answer["auth_chain"]]
    assert set(ids) == await walk_auth_chain(p, [msg])
    assert len(ids) == len(set(ids))
    assert join in ids
    assert msg not in ids
    for pdu, event_id in zip(answer["auth_chain"], ids, strict=True):
        assert pdu == await p.stored(event_id)
    # The create event's chain is empty.
    create_id = ids[0]
    assert (await p.stored(create_id))["type"] == "m.room.create"
    assert (await p.get(f"/event_auth/{q(p.room)}/{q(create_id)}"))["auth_chain"] == []


# -- /backfill and /get_missing_events -----------------------------------------------------------


async def five_messages(p: Pair) -> list[str]:
    await p.join_bob()
    return [await p.say(f"m{i}") for i in range(1, 6)]


async def test_backfill_walks_back_newest_first(pair: Pair) -> None:
    p = pair
    m = await five_messages(p)
    version = await p.a.node.events.get_room_version(p.room)
    room = q(p.room)
    answer = await p.get(f"/backfill/{room}", v=m[4], limit="3")
    assert answer["origin"] == p.a.node.config.server_name
    assert answer["pdus"] == [await p.stored(e) for e in (m[4], m[3], m[2])]
    # Several seeds; duplicates are served once.
    two = await p.get(f"/backfill/{room}", v=[m[1], m[3], m[3]], limit="3")
    assert [pdu_id(e, version) for e in two["pdus"]] == [m[3], m[2], m[1]]
    # A huge limit is capped; the room is smaller than the cap: everything, create last.
    everything = await p.get(f"/backfill/{room}", v=m[4], limit="9" * 40)
    ids = [pdu_id(e, version) for e in everything["pdus"]]
    assert len(ids) == await p.a.node.events.count_events(p.room)
    assert everything["pdus"][-1]["type"] == "m.room.create"
    depths = [e["depth"] for e in everything["pdus"]]
    assert depths == sorted(depths, reverse=True)
    assert (await p.get(f"/backfill/{room}", v=m[4], limit="0"))["pdus"] == []
    assert (await p.get(f"/backfill/{room}", v="$" + "C" * 43, limit="5"))["pdus"] == []


async def test_backfill_bad_queries(pair: Pair) -> None:
    p = pair
    m = await five_messages(p)
    room = q(p.room)
    assert await p.error(f"/backfill/{room}", limit="5") == (400, "M_MISSING_PARAM")
    assert await p.error(f"/backfill/{room}", v=m[0]) == (400, "M_MISSING_PARAM")
    for bad in ["abc", "-1", "1.5", "0x10", " 5", "+5", "٣"]:
        assert await p.error(f"/backfill/{room}", v=m[0], limit=bad) == (400, "M_INVALID_PARAM")
    assert await p.error(f"/backfill/{q('!unknown:x')}", v=m[0], limit="5") == (
        404,
        "M_NOT_FOUND",
    )


async def test_get_missing_events_oldest_first_between_earliest_and_latest(pair: Pair) -> None:
    p = pair
    m = await five_messages(p)
    version = await p.a.node.events.get_room_version(p.room)
    path = f"/get_missing_events/{q(p.room)}"

    answer = await p.post(path, {"earliest_events": [m[0]], "latest_events": [m[4]], "limit": 10})
    assert answer["events"] == [await p.stored(e) for e in (m[1], m[2], m[3])]
    two = await p.post(path, {"earliest_events": [m[0]], "latest_events": [m[4]], "limit": 2})
    assert [pdu_id(e, version) for e in two["events"]] == [m[2], m[3]]
    deep = await p.post(
        path,
        {"earliest_events": [], "latest_events": [m[4]], "min_depth": await p.depth(m[2])},
    )
    assert [pdu_id(e, version) for e in deep["events"]] == [m[2], m[3]]
    # Default limit 10; a huge limit is capped, not an error.
    default = await p.post(path, {"earliest_events": [], "latest_events": [m[4]]})
    assert len(default["events"]) == 10
    everything = await p.post(
        path, {"earliest_events": [], "latest_events": [m[4]], "limit": 10**15}
    )
    assert len(everything["events"]) == await p.a.node.events.count_events(p.room) - 1
    assert everything["events"][0]["type"] == "m.room.create"
    none = await p.post(path, {"earliest_events": [], "latest_events": ["$" + "D" * 43]})
    assert none["events"] == []


async def test_get_missing_events_bad_bodies(pair: Pair) -> None:
    p = pair
    m = await five_messages(p)
    path = f"/get_missing_events/{q(p.room)}"
    for body in [
        [],
        "latest_events",
        {"earliest_events": []},
        {"earliest_events": [], "latest_events": m[0]},
        {"earliest_events": [], "latest_events": [1]},
        {"earliest_events": "x", "latest_events": [m[0]]},
        {"earliest_events": [], "latest_events": [m[0]], "limit": "10"},
        {"earliest_events": [], "latest_events": [m[0]], "limit": True},
        {"earliest_events": [], "latest_events": [m[0]], "limit": -1},
        {"earliest_events": [], "latest_events": [m[0]], "min_depth": "0"},
    ]:
        assert await p.error(path, body) == (400, "M_BAD_JSON"), body


async def test_malformed_json_body_is_400(pair: Pair) -> None:
    """A body that is not JSON is refused before the signature is even looked at."""
    p = pair
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    url = f"https://{p.a.listeners['federation']}{V1}/get_missing_events/{q(p.room)}"
    origin = p.b.node.config.server_name
    headers = {
        "Authorization": f'X-Matrix origin="{origin}",key="ed25519:x",sig="AAAA"',
        "Content-Type": "application/json",
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=b'{"latest_events": [', headers=headers, ssl=ctx) as r:
            assert r.status == 400
            assert (await r.json())["errcode"] == "M_NOT_JSON"


# -- outliers and rejected events ------------------------------------------------------------


async def insert_event(p: Pair, *, depth: int, outlier: bool, rejected: bool, after: str) -> str:
    """Store an event directly (as the receive pipeline would an outlier or a rejected
    event) and make it a prev event of ``after``."""
    event_id = "$" + ("O" if outlier else "R") * 43
    pdu = {
        "type": "m.room.message",
        "room_id": p.room,
        "sender": p.bob,
        "content": {"msgtype": "m.text", "body": "odd"},
        "depth": depth,
        "prev_events": [],
        "auth_events": [],
        "origin_server_ts": 1,
    }

    def write(conn: Any) -> None:
        conn.execute(
            "INSERT INTO events (event_id, room_id, type, state_key, sender, depth,"
            " origin_server_ts, received_ts, outlier, rejected_reason, json)"
            " VALUES (?, ?, 'm.room.message', NULL, ?, ?, 1, 1, ?, ?, ?)",
            (
                event_id,
                p.room,
                p.bob,
                depth,
                int(outlier),
                "test" if rejected else None,
                json.dumps(pdu).encode(),
            ),
        )
        conn.execute(
            "INSERT INTO event_edges (event_id, prev_event_id) VALUES (?, ?)", (after, event_id)
        )

    await p.a.node.db.write_sync(write)
    return event_id


async def test_outliers_and_rejected_events_are_not_walked_out(pair: Pair) -> None:
    p = pair
    m = await five_messages(p)
    version = await p.a.node.events.get_room_version(p.room)
    outlier = await insert_event(
        p, depth=await p.depth(m[1]), outlier=True, rejected=False, after=m[2]
    )
    rejected = await insert_event(
        p, depth=await p.depth(m[2]), outlier=False, rejected=True, after=m[3]
    )
    room = q(p.room)
    back = await p.get(f"/backfill/{room}", v=m[4], limit="100")
    ids = [pdu_id(e, version) for e in back["pdus"]]
    assert outlier not in ids and rejected not in ids
    assert set(m) <= set(ids)
    assert len(ids) == await p.a.node.events.count_events(p.room) - 2
    # An outlier seed is not served either.
    assert (await p.get(f"/backfill/{room}", v=outlier, limit="5"))["pdus"] == []

    gme = await p.post(
        f"/get_missing_events/{room}", {"earliest_events": [m[0]], "latest_events": [m[4]]}
    )
    assert [pdu_id(e, version) for e in gme["events"]] == [m[1], m[2], m[3]]

    # /event serves them (as stored); no state is known at them.
    assert (await p.get(f"/event/{q(outlier)}"))["pdus"][0]["content"]["body"] == "odd"
    assert (await p.get(f"/event/{q(rejected)}"))["pdus"][0]["content"]["body"] == "odd"
    for event_id in (outlier, rejected):
        assert await p.error(f"/state_ids/{room}", event_id=event_id) == (404, "M_NOT_FOUND")
        assert await p.error(f"/state/{room}", event_id=event_id) == (404, "M_NOT_FOUND")
    assert await p.error(f"/event_auth/{room}/{q(rejected)}") == (404, "M_NOT_FOUND")
