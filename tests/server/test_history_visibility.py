"""History visibility on a real node: what the owner may read of a room's history
through /messages, /context, /event, /relations, /threads, /search, /state and
/members, as they join, leave, are kicked or banned, and as m.room.history_visibility
changes.

Spec: content/client-server-api/modules/history_visibility.md, _index.md "Leaving
rooms"; rooms.yaml (/event 404, /state and /members "when they left"),
message_pagination.yaml, event_context.yaml, relations.yaml.

This single-user node has no second local account, so the other member is
``@bob:remote.example`` whose events enter through the room service (as in
tests/sync/test_sync.py and tests/push/test_push_delivery.py); the owner is the one
who reads over HTTP.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import aiohttp
import pytest

from node.app import RunningNode
from node.events.room_versions import DEFAULT_ROOM_VERSION
from node.rooms.creation import PlannedEvent, RoomRequest
from node.rooms.visibility import StateAtEvent
from node.storage.visibility import VisibilityStore
from tests.client import call
from tests.conftest import OWNER, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"
BOB = "@bob:remote.example"
_txn = itertools.count()


@pytest.fixture
def v3(client_url: str) -> str:
    return f"{client_url}/_matrix/client/v3"


@pytest.fixture
def v1(client_url: str) -> str:
    return f"{client_url}/_matrix/client/v1"


# -- helpers -------------------------------------------------------------------------------


async def bob_room(node: RunningNode, visibility: str, preset: str = "public_chat") -> str:
    """A room Bob created, with the given history_visibility."""
    request = RoomRequest(
        creator=BOB,
        room_version=DEFAULT_ROOM_VERSION,
        preset=preset,
        initial_state=[
            PlannedEvent("m.room.history_visibility", "", {"history_visibility": visibility})
        ],
    )
    return await node.node.rooms.create_room(request)


async def bob_says(node: RunningNode, room: str, body: str, **content: Any) -> str:
    return await node.node.rooms.send(
        BOB, room, "m.room.message", {"msgtype": "m.text", "body": body, **content}
    )


async def bob_state(
    node: RunningNode, room: str, etype: str, content: dict[str, Any], key: str = ""
) -> str:
    return await node.node.rooms.send(BOB, room, etype, content, state_key=key)


async def owner_says(http: aiohttp.ClientSession, v3: str, token: str, room: str, body: str) -> str:
    path = f"{v3}/rooms/{room}/send/m.room.message/t{next(_txn)}"
    sent = await call(http, "PUT", path, token, {"msgtype": "m.text", "body": body})
    return str(sent["event_id"])


def in_thread(root: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.thread", "event_id": root}}


async def all_messages(
    http: aiohttp.ClientSession, v3: str, token: str, room: str, **params: str
) -> list[dict[str, Any]]:
    """Every event /messages serves, page by page until a page has no ``end``."""
    query = {"limit": "3", **params}
    served: list[dict[str, Any]] = []
    for _ in range(200):
        page = await call(http, "GET", f"{v3}/rooms/{room}/messages", token, None, 200, **query)
        served += page["chunk"]
        if "end" not in page:
            return served
        assert page["end"] != query.get("from"), "end did not move on"
        query["from"] = page["end"]
    raise AssertionError("/messages never stopped giving an end token")


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def ids(events: list[dict[str, Any]]) -> set[str]:
    return {e["event_id"] for e in events}


async def search(
    http: aiohttp.ClientSession, v3: str, token: str, term: str, **extra: Any
) -> list[str]:
    body = {"search_categories": {"room_events": {"search_term": term, **extra}}}
    found = await call(http, "POST", f"{v3}/search", token, body)
    return [
        r["result"]["content"]["body"] for r in found["search_categories"]["room_events"]["results"]
    ]


async def error(
    http: aiohttp.ClientSession, method: str, url: str, token: str, status: int, body: Any = None
) -> str:
    return str((await call(http, method, url, token, body, status=status))["errcode"])


# -- leaving -------------------------------------------------------------------------------


async def test_a_user_who_left_reads_history_up_to_the_leave(
    http: aiohttp.ClientSession, v3: str, v1: str, token: str, node: RunningNode
) -> None:
    room = (
        await call(
            http, "POST", f"{v3}/createRoom", token, {"preset": "public_chat", "name": "Old"}
        )
    )["room_id"]
    await bob_state(node, room, "m.room.member", {"membership": "join", "displayname": "Bob"}, BOB)
    levels = await call(http, "GET", f"{v3}/rooms/{room}/state/m.room.power_levels", token)
    levels["users"][BOB] = 50
    await call(http, "PUT", f"{v3}/rooms/{room}/state/m.room.power_levels", token, levels)
    mine = await owner_says(http, v3, token, room, "apple")
    root = await owner_says(http, v3, token, room, "thread root")
    early_reply = await bob_says(node, room, "banana", **in_thread(root))
    said = await bob_says(node, room, "cherry")

    # While joined, all of it is there.
    assert bodies(await all_messages(http, v3, token, room)) == [
        "cherry",
        "banana",
        "thread root",
        "apple",
    ]

    leave = await call(http, "POST", f"{v3}/rooms/{room}/leave", token, {})
    assert leave == {}
    late_reply = await bob_says(node, room, "durian", **in_thread(root))
    later = await bob_says(node, room, "elderberry")
    late_root = await bob_says(node, room, "fig root")
    await bob_says(node, room, "fig reply", **in_thread(late_root))
    await bob_state(node, room, "m.room.name", {"name": "New"})
    await bob_state(
        node, room, "m.room.member", {"membership": "join", "displayname": "Robert"}, BOB
    )
    after = {late_reply, later, late_root}

    # /messages: backwards from now, the newest event is the owner's own leave.
    backwards = await all_messages(http, v3, token, room)
    assert bodies(backwards) == ["cherry", "banana", "thread root", "apple"]
    assert backwards[0]["type"] == "m.room.member" and backwards[0]["state_key"] == OWNER_ID
    assert backwards[0]["content"]["membership"] == "leave"
    assert not after & ids(backwards)
    # Forwards from the start: the same events, oldest first, and then no end.
    forwards = await all_messages(http, v3, token, room, dir="f")
    assert [e["event_id"] for e in forwards] == [e["event_id"] for e in reversed(backwards)]
    # A page of a short limit still stops at the leave.
    page = await call(http, "GET", f"{v3}/rooms/{room}/messages", token, dir="b", limit="1")
    assert page["chunk"][0]["content"] == {"membership": "leave"}

    # /event: before the leave 200, after it 404.
    assert (await call(http, "GET", f"{v3}/rooms/{room}/event/{said}", token))["content"][
        "body"
    ] == "cherry"
    for event_id in after:
        url = f"{v3}/rooms/{room}/event/{event_id}"
        assert await error(http, "GET", url, token, 404) == "M_NOT_FOUND"

    # /context: around an event before the leave, nothing after it; after it, 404.
    context = await call(http, "GET", f"{v3}/rooms/{room}/context/{said}", token, limit="20")
    assert context["event"]["event_id"] == said
    assert [e["type"] for e in context["events_after"]] == ["m.room.member"]  # the leave
    assert mine in ids(context["events_before"])
    names = [e["content"].get("name") for e in context["state"] if e["type"] == "m.room.name"]
    assert names == ["Old"]
    url = f"{v3}/rooms/{room}/context/{later}"
    assert await error(http, "GET", url, token, 404) == "M_NOT_FOUND"

    # /relations and /threads.
    rel = await call(http, "GET", f"{v1}/rooms/{room}/relations/{root}", token)
    assert ids(rel["chunk"]) == {early_reply}
    url = f"{v1}/rooms/{room}/relations/{late_root}"
    assert await error(http, "GET", url, token, 404) == "M_NOT_FOUND"
    threads = await call(http, "GET", f"{v1}/rooms/{room}/threads", token)
    assert ids(threads["chunk"]) == {root}

    # /state, /state/{type}/{key}, /members: as they were at the leave.
    state = await call(http, "GET", f"{v3}/rooms/{room}/state", token)
    assert [e["content"]["name"] for e in state if e["type"] == "m.room.name"] == ["Old"]
    name = await call(http, "GET", f"{v3}/rooms/{room}/state/m.room.name", token)
    assert name == {"name": "Old"}
    own = await call(http, "GET", f"{v3}/rooms/{room}/state/m.room.member/{OWNER_ID}", token)
    assert own["membership"] == "leave"
    members = await call(http, "GET", f"{v3}/rooms/{room}/members", token)
    by_user = {e["state_key"]: e["content"] for e in members["chunk"]}
    assert by_user[BOB]["displayname"] == "Bob"
    assert by_user[OWNER_ID]["membership"] == "leave"
    lazy = json.dumps({"lazy_load_members": True})
    page = await call(http, "GET", f"{v3}/rooms/{room}/messages", token, limit="10", filter=lazy)
    bob_member = [e for e in page["state"] if e["state_key"] == BOB]
    assert bob_member[0]["content"]["displayname"] == "Bob"
    url = f"{v3}/rooms/{room}/joined_members"
    assert await error(http, "GET", url, token, 403) == "M_FORBIDDEN"

    # Rejoining a "shared" room: what was sent while away is visible now (spec rule
    # 3: the user joined after it was sent), and the state is the current one.
    await call(http, "POST", f"{v3}/rooms/{room}/join", token, {})
    back = bodies(await all_messages(http, v3, token, room))
    before = ["cherry", "banana", "thread root", "apple"]
    assert back == ["fig reply", "fig root", "elderberry", "durian", *before]
    assert (await call(http, "GET", f"{v3}/rooms/{room}/state/m.room.name", token)) == {
        "name": "New"
    }
    threads = await call(http, "GET", f"{v1}/rooms/{room}/threads", token)
    assert ids(threads["chunk"]) == {root, late_root}


@pytest.mark.parametrize("how", ["kick", "ban"])
async def test_kicked_or_banned_user_reads_up_to_it(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode, how: str
) -> None:
    room = await bob_room(node, "joined")
    await call(http, "POST", f"{v3}/join/{room}", token, {})
    before = await bob_says(node, room, "before")
    membership = "leave" if how == "kick" else "ban"
    await bob_state(
        node, room, "m.room.member", {"membership": membership, "reason": "r"}, OWNER_ID
    )
    after = await bob_says(node, room, "after")
    await bob_state(node, room, "m.room.topic", {"topic": "changed"})

    served = await all_messages(http, v3, token, room)
    assert bodies(served) == ["before"]
    assert served[0]["content"] == {"membership": membership, "reason": "r"}
    assert (await call(http, "GET", f"{v3}/rooms/{room}/event/{before}", token))["event_id"]
    url = f"{v3}/rooms/{room}/event/{after}"
    assert await error(http, "GET", url, token, 404) == "M_NOT_FOUND"
    own = await call(http, "GET", f"{v3}/rooms/{room}/state/m.room.member/{OWNER_ID}", token)
    assert own["membership"] == membership
    url = f"{v3}/rooms/{room}/state/m.room.topic"
    assert await error(http, "GET", url, token, 404) == "M_NOT_FOUND"  # set after


async def test_forgotten_room_is_no_longer_readable(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    room = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    said = await owner_says(http, v3, token, room, "hello")
    await call(http, "POST", f"{v3}/rooms/{room}/leave", token, {})
    assert bodies(await all_messages(http, v3, token, room)) == ["hello"]
    await call(http, "POST", f"{v3}/rooms/{room}/forget", token, {})
    for method, path in [
        ("GET", f"/rooms/{room}/messages"),
        ("GET", f"/rooms/{room}/event/{said}"),
        ("GET", f"/rooms/{room}/state"),
        ("GET", f"/rooms/{room}/members"),
    ]:
        assert await error(http, method, v3 + path, token, 403) == "M_FORBIDDEN"


# -- history_visibility settings -----------------------------------------------------------


async def test_joined_hides_what_was_sent_before_the_join(
    http: aiohttp.ClientSession, v3: str, v1: str, token: str, node: RunningNode
) -> None:
    room = await bob_room(node, "joined")
    early = await bob_says(node, room, "walrus early")
    early_root = await bob_says(node, room, "walrus root")
    # Not in the room and not world_readable: 403 everywhere.
    for path in [f"/rooms/{room}/messages", f"/rooms/{room}/event/{early}", f"/rooms/{room}/state"]:
        assert await error(http, "GET", v3 + path, token, 403) == "M_FORBIDDEN"
    url = f"{v1}/rooms/{room}/threads"
    assert await error(http, "GET", url, token, 403) == "M_FORBIDDEN"

    join = (await call(http, "POST", f"{v3}/join/{room}", token, {}))["room_id"]
    assert join == room
    late = await bob_says(node, room, "walrus late")
    await bob_says(node, room, "walrus reply", **in_thread(early_root))

    served = await all_messages(http, v3, token, room)
    assert bodies(served) == ["walrus reply", "walrus late"]
    assert not {early, early_root} & ids(served)
    own = [e["content"]["membership"] for e in served if e.get("state_key") == OWNER_ID]
    assert own == ["join"]
    forwards = await all_messages(http, v3, token, room, dir="f")
    assert bodies(forwards) == ["walrus late", "walrus reply"]
    for event_id in (early, early_root):
        for path in (f"/rooms/{room}/event/{event_id}", f"/rooms/{room}/context/{event_id}"):
            assert await error(http, "GET", v3 + path, token, 404) == "M_NOT_FOUND"
    url = f"{v1}/rooms/{room}/relations/{early_root}"
    assert await error(http, "GET", url, token, 404) == "M_NOT_FOUND"
    # The thread's root is hidden, so the thread is not listed either.
    assert (await call(http, "GET", f"{v1}/rooms/{room}/threads", token))["chunk"] == []
    context = await call(http, "GET", f"{v3}/rooms/{room}/context/{late}", token)
    assert bodies(context["events_before"]) == []
    # /search searches the room (the owner is in it) but shows only what they may see.
    recent = await search(http, v3, token, "walrus", order_by="recent")
    assert recent == ["walrus reply", "walrus late"]
    found = await search(
        http, v3, token, "walrus", event_context={"before_limit": 5, "after_limit": 5}
    )
    assert sorted(found) == ["walrus late", "walrus reply"]
    body = {
        "search_categories": {
            "room_events": {
                "search_term": "walrus",
                "event_context": {"before_limit": 5, "after_limit": 5},
                "groupings": {"group_by": [{"key": "sender"}]},
            }
        }
    }
    got = (await call(http, "POST", f"{v3}/search", token, body))["search_categories"]
    for result in got["room_events"]["results"]:
        around = result["context"]["events_before"] + result["context"]["events_after"]
        assert not {early, early_root} & ids(around)
    assert set(got["room_events"]["groups"]["sender"][BOB]["results"]) == ids(
        [r["result"] for r in got["room_events"]["results"]]
    )


async def test_joined_hides_the_stretch_while_away(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    room = await bob_room(node, "joined")
    await call(http, "POST", f"{v3}/join/{room}", token, {})
    first = await bob_says(node, room, "first")
    await call(http, "POST", f"{v3}/rooms/{room}/leave", token, {})
    away = await bob_says(node, room, "while away")
    await call(http, "POST", f"{v3}/join/{room}", token, {})
    await bob_says(node, room, "back")

    assert bodies(await all_messages(http, v3, token, room)) == ["back", "first"]
    assert bodies(await all_messages(http, v3, token, room, dir="f")) == ["first", "back"]
    context = await call(http, "GET", f"{v3}/rooms/{room}/context/{first}", token)
    assert bodies(context["events_after"]) == ["back"]
    own = [
        e["content"]["membership"] for e in context["events_after"] if e["type"] == "m.room.member"
    ]
    assert own == ["leave", "join"]
    assert away not in ids(context["events_after"])
    url = f"{v3}/rooms/{room}/event/{away}"
    assert await error(http, "GET", url, token, 404) == "M_NOT_FOUND"


async def test_invited_shows_history_from_the_invite(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    room = await bob_room(node, "invited", preset="private_chat")
    await bob_says(node, room, "before invite")
    await bob_state(node, room, "m.room.member", {"membership": "invite"}, OWNER_ID)
    invited = await bob_says(node, room, "while invited")
    # Invited but never joined: not yet readable.
    url = f"{v3}/rooms/{room}/messages"
    assert await error(http, "GET", url, token, 403) == "M_FORBIDDEN"
    await call(http, "POST", f"{v3}/rooms/{room}/join", token, {})
    await bob_says(node, room, "joined")

    served = await all_messages(http, v3, token, room)
    assert bodies(served) == ["joined", "while invited"]
    own = [e["content"]["membership"] for e in served if e.get("state_key") == OWNER_ID]
    assert own == ["join", "invite"]
    assert (await call(http, "GET", f"{v3}/rooms/{room}/event/{invited}", token))["event_id"]


async def test_shared_shows_all_history_once_joined(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    room = await bob_room(node, "shared")
    early = await bob_says(node, room, "before join")
    await call(http, "POST", f"{v3}/join/{room}", token, {})
    await bob_says(node, room, "while joined")
    assert bodies(await all_messages(http, v3, token, room)) == ["while joined", "before join"]
    await call(http, "POST", f"{v3}/rooms/{room}/leave", token, {})
    late = await bob_says(node, room, "after leave")
    # Still visible after leaving (they joined after it was sent); the later one not.
    assert bodies(await all_messages(http, v3, token, room)) == ["while joined", "before join"]
    assert (await call(http, "GET", f"{v3}/rooms/{room}/event/{early}", token))["event_id"]
    url = f"{v3}/rooms/{room}/event/{late}"
    assert await error(http, "GET", url, token, 404) == "M_NOT_FOUND"


async def test_world_readable_lets_a_non_member_read(
    http: aiohttp.ClientSession, v3: str, v1: str, token: str, node: RunningNode
) -> None:
    room = await bob_room(node, "world_readable")
    hello = await bob_says(node, room, "hello world")
    assert bodies(await all_messages(http, v3, token, room)) == ["hello world"]
    assert (await call(http, "GET", f"{v3}/rooms/{room}/event/{hello}", token))["event_id"]
    context = await call(http, "GET", f"{v3}/rooms/{room}/context/{hello}", token)
    assert context["event"]["event_id"] == hello
    members = await call(http, "GET", f"{v3}/rooms/{room}/members", token)
    assert {e["state_key"] for e in members["chunk"]} == {BOB}
    state = await call(http, "GET", f"{v3}/rooms/{room}/state/m.room.history_visibility", token)
    assert state == {"history_visibility": "world_readable"}
    assert (await call(http, "GET", f"{v1}/rooms/{room}/threads", token))["chunk"] == []
    url = f"{v3}/rooms/{room}/joined_members"
    assert await error(http, "GET", url, token, 403) == "M_FORBIDDEN"  # must be in the room

    # While it stays world_readable, the change away is visible but nothing after it;
    # once it is not world_readable, a non-member may not read at all.
    await bob_state(node, room, "m.room.history_visibility", {"history_visibility": "shared"})
    await bob_says(node, room, "members only")
    url = f"{v3}/rooms/{room}/messages"
    assert await error(http, "GET", url, token, 403) == "M_FORBIDDEN"
    await bob_state(
        node, room, "m.room.history_visibility", {"history_visibility": "world_readable"}
    )
    served = await all_messages(http, v3, token, room)
    assert bodies(served) == ["hello world"]
    changes = [
        e["content"]["history_visibility"]
        for e in served
        if e["type"] == "m.room.history_visibility"
    ]
    assert changes == ["world_readable", "shared", "world_readable"]


async def test_a_private_room_is_not_readable_by_a_stranger(
    http: aiohttp.ClientSession, v3: str, v1: str, token: str, node: RunningNode
) -> None:
    room = await bob_room(node, "shared", preset="private_chat")
    said = await bob_says(node, room, "secret")
    for url in [
        f"{v3}/rooms/{room}/messages",
        f"{v3}/rooms/{room}/event/{said}",
        f"{v3}/rooms/{room}/context/{said}",
        f"{v3}/rooms/{room}/state",
        f"{v3}/rooms/{room}/state/m.room.name",
        f"{v3}/rooms/{room}/members",
        f"{v3}/rooms/{room}/joined_members",
        f"{v1}/rooms/{room}/relations/{said}",
        f"{v1}/rooms/{room}/threads",
    ]:
        assert await error(http, "GET", url, token, 403) == "M_FORBIDDEN", url
    assert await search(http, v3, token, "secret") == []


# -- pagination over hidden stretches --------------------------------------------------------


async def test_pagination_over_hidden_history_ends(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    room = await bob_room(node, "joined")
    for i in range(25):
        await bob_says(node, room, f"hidden {i}")
    await call(http, "POST", f"{v3}/join/{room}", token, {})
    shown = [await bob_says(node, room, f"shown {i}") for i in range(4)]
    await call(http, "POST", f"{v3}/rooms/{room}/leave", token, {})
    for i in range(25):
        await bob_says(node, room, f"hidden after {i}")

    for direction in ("b", "f"):
        for limit in ("1", "2", "50"):
            pages = 0
            query = {"dir": direction, "limit": limit}
            got: list[dict[str, Any]] = []
            while True:
                pages += 1
                page = await call(
                    http, "GET", f"{v3}/rooms/{room}/messages", token, None, 200, **query
                )
                assert len(page["chunk"]) <= int(limit)
                got += page["chunk"]
                if "end" not in page:
                    break
                query["from"] = page["end"]
                assert pages < 20, "pagination does not end"
            expected = shown if direction == "f" else shown[::-1]
            assert [e["event_id"] for e in got if e["type"] == "m.room.message"] == expected
            own = [e["content"]["membership"] for e in got if e.get("state_key") == OWNER_ID]
            assert own == (["join", "leave"] if direction == "f" else ["leave", "join"])
    # A `to` token bounds the range as before (here: /context's token at "shown 0").
    at = await call(http, "GET", f"{v3}/rooms/{room}/context/{shown[0]}", token, limit="0")
    rest = await call(
        http, "GET", f"{v3}/rooms/{room}/messages", token, dir="b", to=at["end"], limit="50"
    )
    assert bodies(rest["chunk"]) == ["shown 3", "shown 2", "shown 1"]
    assert "end" not in rest


# -- the store helper ----------------------------------------------------------------------


async def test_store_gives_visibility_and_membership_at_each_event(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    room = await bob_room(node, "joined")
    a = await bob_says(node, room, "a")
    await call(http, "POST", f"{v3}/join/{room}", token, {})
    b = await bob_says(node, room, "b")
    vis = await bob_state(node, room, "m.room.history_visibility", {"history_visibility": "shared"})
    c = await bob_says(node, room, "c")
    await call(http, "POST", f"{v3}/rooms/{room}/leave", token, {})
    d = await bob_says(node, room, "d")
    stored = await node.node.events.get_events([a, b, vis, c, d])
    positions = {eid: s.stream_ordering for eid, s in stored.items()}
    store = VisibilityStore(node.node.db)
    states = await store.states_at(room, OWNER_ID, list(positions.values()))
    assert {eid: states[p] for eid, p in positions.items()} == {
        a: StateAtEvent("joined", None, True),
        b: StateAtEvent("joined", "join", False),
        vis: StateAtEvent("joined", "join", False),  # the value before the event itself
        c: StateAtEvent("shared", "join", False),
        d: StateAtEvent("shared", "leave", False),
    }
    snapshot = await store.load(OWNER_ID, [room, "!unknown:elsewhere"], [a, "$nope"])
    assert snapshot.positions == {a: positions[a]}
    assert not snapshot.rooms["!unknown:elsewhere"].may_read
    assert snapshot.rooms[room].current_membership == "leave"
    assert snapshot.rooms[room].current_visibility == "shared"


async def test_bundled_aggregations_stop_at_the_leave(
    http: aiohttp.ClientSession, v3: str, v1: str, token: str, node: RunningNode
) -> None:
    """A thread root, an edit and a reply the reader saw, then more after they left:
    /event, /messages, /context and /relations bundle only what they may see."""
    room = await bob_room(node, "shared")
    owner = f"@{OWNER}:{SERVER_NAME}"
    await call(http, "POST", f"{v3}/join/{room}", token, {})
    root = await bob_says(node, room, "root")
    seen_reply = await bob_says(node, room, "seen reply", **in_thread(root))
    await call(http, "POST", f"{v3}/rooms/{room}/leave", token, {})
    assert (await node.node.events.get_user_memberships(owner))[room].event.membership == "leave"
    await bob_says(node, room, "unseen reply", **in_thread(root))
    await bob_says(
        node,
        room,
        "* edited later",
        **{
            "m.new_content": {"msgtype": "m.text", "body": "edited later"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": root},
        },
    )

    def check(served: dict[str, Any]) -> None:
        relations = served["unsigned"]["m.relations"]
        assert relations["m.thread"]["count"] == 1
        assert relations["m.thread"]["latest_event"]["event_id"] == seen_reply
        assert "m.replace" not in relations

    check(await call(http, "GET", f"{v3}/rooms/{room}/event/{root}", token))
    page = await all_messages(http, v3, token, room)
    (served_root,) = [e for e in page if e["event_id"] == root]
    check(served_root)
    context = await call(http, "GET", f"{v3}/rooms/{room}/context/{seen_reply}", token)
    (served_root,) = [e for e in context["events_before"] if e["event_id"] == root]
    check(served_root)
    threads = await call(http, "GET", f"{v1}/rooms/{room}/threads", token)
    (served_root,) = [e for e in threads["chunk"] if e["event_id"] == root]
    check(served_root)
