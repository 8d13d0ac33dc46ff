"""Relations, threads and bundled aggregations against a real node.

Spec: _index.md "Aggregations of child events", "Relationships API"; modules/
threading.md, event_replacements.md, reference_relations.md, event_annotations.md.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import nio

from tests.conftest import OWNER, PASSWORD
from tests.relations.client import OWNER_ID, Client, relations_of


def thread(root: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.thread", "event_id": root}}


def edit(original: str, body: str) -> dict[str, Any]:
    return {
        "msgtype": "m.text",
        "body": f"* {body}",
        "m.new_content": {"msgtype": "m.text", "body": body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    }


def rel(owner: Client, room: str, event: str, *parts: str) -> str:
    tail = "".join(f"/{quote(p)}" for p in parts)
    return f"v1/rooms/{quote(room)}/relations/{quote(event)}{tail}"


async def test_thread_aggregation_on_event_messages_and_threads(owner: Client) -> None:
    room = await owner.create_room()
    root = await owner.text(room, "root")
    replies = [await owner.text(room, f"reply {i}", **thread(root)) for i in range(3)]
    edited = await owner.send(room, edit(replies[-1], "reply 2, edited"))

    served = await owner.event(room, root)
    agg = relations_of(served)["m.thread"]
    assert agg["count"] == 3
    assert agg["current_user_participated"] is True
    latest = agg["latest_event"]
    assert latest["event_id"] == replies[-1]
    assert latest["room_id"] == room
    # The latest event carries its own aggregations: here, its edit.
    assert relations_of(latest)["m.replace"]["event_id"] == edited

    messages = await owner.call(
        "GET", f"v3/rooms/{quote(room)}/messages", params={"dir": "b", "limit": "20"}
    )
    by_id = {e["event_id"]: e for e in messages["chunk"]}
    assert relations_of(by_id[root])["m.thread"]["count"] == 3
    assert "m.relations" not in by_id[replies[0]]["unsigned"]

    threads = await owner.call("GET", f"v1/rooms/{quote(room)}/threads")
    assert [e["event_id"] for e in threads["chunk"]] == [root]
    assert relations_of(threads["chunk"][0])["m.thread"]["latest_event"]["event_id"] == replies[-1]
    assert "next_batch" not in threads


async def test_threads_ordered_by_latest_reply_and_paginated(owner: Client) -> None:
    room = await owner.create_room()
    roots = [await owner.text(room, f"root {i}") for i in range(3)]
    for root in roots:
        await owner.text(room, "first", **thread(root))
    await owner.text(room, "bump", **thread(roots[0]))  # roots[0] is now the most active

    page1 = await owner.call("GET", f"v1/rooms/{quote(room)}/threads", params={"limit": "2"})
    assert [e["event_id"] for e in page1["chunk"]] == [roots[0], roots[2]]
    page2 = await owner.call(
        "GET",
        f"v1/rooms/{quote(room)}/threads",
        params={"limit": "2", "from": page1["next_batch"]},
    )
    assert [e["event_id"] for e in page2["chunk"]] == [roots[1]]
    assert "next_batch" not in page2

    mine = await owner.call(
        "GET", f"v1/rooms/{quote(room)}/threads", params={"include": "participated"}
    )
    assert len(mine["chunk"]) == 3  # the owner wrote every root and reply


async def test_latest_edit_wins_and_redacted_original_has_none(owner: Client) -> None:
    room = await owner.create_room()
    original = await owner.text(room, "I like cake")
    await owner.send(room, edit(original, "I like chocolate cake"))
    second = await owner.send(room, edit(original, "I like all cake"))
    # Not valid edits: another event type, and no m.new_content.
    await owner.send(room, edit(original, "sticker?"), etype="m.sticker")
    await owner.text(
        room, "* no new content", **{"m.relates_to": edit(original, "")["m.relates_to"]}
    )

    served = await owner.event(room, original)
    replace = relations_of(served)["m.replace"]
    assert replace["event_id"] == second
    assert replace["content"]["m.new_content"]["body"] == "I like all cake"
    assert served["content"]["body"] == "I like cake"  # the content is never replaced

    await owner.redact(room, original)
    assert "m.replace" not in relations_of(await owner.event(room, original))


async def test_redacted_edit_falls_back_to_the_previous_one(owner: Client) -> None:
    room = await owner.create_room()
    original = await owner.text(room, "v0")
    first = await owner.send(room, edit(original, "v1"))
    second = await owner.send(room, edit(original, "v2"))
    await owner.redact(room, second)
    assert relations_of(await owner.event(room, original))["m.replace"]["event_id"] == first


async def test_reference_aggregation(owner: Client) -> None:
    room = await owner.create_room()
    parent = await owner.text(room, "parent")
    ref = {"m.relates_to": {"rel_type": "m.reference", "event_id": parent}}
    one = await owner.send(room, {"x": 1, **ref}, etype="org.example.ref")
    two = await owner.send(room, {"x": 2, **ref}, etype="org.example.ref")
    agg = relations_of(await owner.event(room, parent))
    assert agg == {"m.reference": {"chunk": [{"event_id": one}, {"event_id": two}]}}


async def test_relations_paging_filters_and_recursion(owner: Client) -> None:
    room = await owner.create_room()
    parent = await owner.text(room, "parent")
    children = []
    for key in ("a", "b", "c", "d", "e"):
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": key}}
        children.append(await owner.send(room, content, etype="m.reaction"))
    ref = await owner.send(
        room, {"m.relates_to": {"rel_type": "m.reference", "event_id": parent}}, etype="m.x"
    )
    grandchild = await owner.send(
        room, {"m.relates_to": {"rel_type": "m.reference", "event_id": ref}}, etype="m.x"
    )

    everything = await owner.call("GET", rel(owner, room, parent))
    assert [e["event_id"] for e in everything["chunk"]] == [ref, *reversed(children)]
    assert "recursion_depth" not in everything

    # Backwards in pages of two, newest first, until there is no next_batch.
    seen: list[str] = []
    params = {"limit": "2"}
    while True:
        page = await owner.call("GET", rel(owner, room, parent, "m.annotation"), params=params)
        seen += [e["event_id"] for e in page["chunk"]]
        if "next_batch" not in page:
            break
        assert page["prev_batch"] == params["from"] if "from" in params else True
        params = {"limit": "2", "from": page["next_batch"]}
    assert seen == list(reversed(children))

    forwards = await owner.call(
        "GET", rel(owner, room, parent, "m.annotation", "m.reaction"), params={"dir": "f"}
    )
    assert [e["event_id"] for e in forwards["chunk"]] == children
    none = await owner.call("GET", rel(owner, room, parent, "m.annotation", "m.room.message"))
    assert none["chunk"] == []

    deep = await owner.call("GET", rel(owner, room, parent), params={"recurse": "true"})
    assert deep["recursion_depth"] == 3
    assert [e["event_id"] for e in deep["chunk"]][:2] == [grandchild, ref]
    # With a rel_type filter the chain must match at every step (here it does).
    refs = await owner.call(
        "GET", rel(owner, room, parent, "m.reference"), params={"recurse": "true"}
    )
    assert [e["event_id"] for e in refs["chunk"]] == [grandchild, ref]
    flat = await owner.call("GET", rel(owner, room, parent), params={"recurse": "false"})
    assert flat["recursion_depth"] == 1
    assert grandchild not in [e["event_id"] for e in flat["chunk"]]


async def test_relation_checks_on_send(owner: Client) -> None:
    room = await owner.create_room()
    root = await owner.text(room, "root")
    in_thread = await owner.text(room, "in thread", **thread(root))
    # A thread cannot start from an event that has a relation itself.
    path = f"v3/rooms/{quote(room)}/send/m.room.message/nested"
    error = await owner.call(
        "PUT", path, {"msgtype": "m.text", "body": "x", **thread(in_thread)}, status=400
    )
    assert error["errcode"] == "M_UNKNOWN"

    react = {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}}
    path = f"v3/rooms/{quote(room)}/send/m.reaction/react1"
    first = await owner.call("PUT", path, react)
    # A retry of the same transaction is not a duplicate: it gets the same event back.
    assert await owner.call("PUT", path, react) == first
    dup = await owner.call(
        "PUT", f"v3/rooms/{quote(room)}/send/m.reaction/react2", react, status=400
    )
    assert dup["errcode"] == "M_DUPLICATE_ANNOTATION"
    # Once the first is redacted, the same annotation may be sent again.
    await owner.redact(room, first["event_id"])
    await owner.call("PUT", f"v3/rooms/{quote(room)}/send/m.reaction/react3", react)


async def test_limited_sync_timeline_carries_aggregations(owner: Client) -> None:
    room = await owner.create_room()
    root = await owner.text(room, "root")
    for i in range(3):
        await owner.text(room, f"r{i}", **thread(root))
    await owner.text(room, "after")
    flt = json.dumps({"room": {"timeline": {"limit": 5}}})
    data = await owner.call("GET", "v3/sync", params={"filter": flt})
    timeline = data["rooms"]["join"][room]["timeline"]
    assert timeline["limited"] is True
    by_id = {e["event_id"]: e for e in timeline["events"]}
    agg = relations_of(by_id[root])["m.thread"]
    assert agg["count"] == 3
    assert "room_id" not in agg["latest_event"]  # served like the sync events around it


async def test_relations_errors(owner: Client) -> None:
    room = await owner.create_room()
    parent = await owner.text(room, "parent")
    for params in (
        {"dir": "x"},
        {"limit": "0"},
        {"limit": "many"},
        {"from": "nonsense"},
        {"from": "p" + "9" * 30},  # beyond SQLite's integers
        {"to": "s" + "9" * 30},
        {"recurse": "yes"},
    ):
        error = await owner.call("GET", rel(owner, room, parent), params=params, status=400)
        assert error["errcode"] == "M_INVALID_PARAM", params
    error = await owner.call("GET", rel(owner, room, "$unknown"), status=404)
    assert error["errcode"] == "M_NOT_FOUND"
    other = await owner.create_room()
    error = await owner.call("GET", rel(owner, other, parent), status=404)
    assert error["errcode"] == "M_NOT_FOUND"
    error = await owner.call("GET", rel(owner, "!nope:elsewhere", parent), status=403)
    assert error["errcode"] == "M_FORBIDDEN"
    error = await owner.call("GET", rel(owner, "not-a-room", parent), status=400)
    assert error["errcode"] == "M_INVALID_PARAM"
    error = await owner.call(
        "GET", f"v1/rooms/{quote(room)}/threads", params={"include": "some"}, status=400
    )
    assert error["errcode"] == "M_INVALID_PARAM"
    error = await owner.call("GET", rel(owner, room, parent), auth=False, status=401)
    assert error["errcode"] == "M_MISSING_TOKEN"


# -- /context ------------------------------------------------------------------------------


async def test_context_with_nio_and_tokens_that_page_on(client_url: str, owner: Client) -> None:
    room = await owner.create_room(name="Context")
    ids = [await owner.text(room, f"m{i}") for i in range(9)]
    client = nio.AsyncClient(client_url, OWNER)
    try:
        await client.login(PASSWORD)
        got = await client.room_context(room, ids[4], limit=4)
        assert isinstance(got, nio.RoomContextResponse), got
        assert got.event.event_id == ids[4]
        assert [e.event_id for e in got.events_before] == [ids[3], ids[2]]
        assert [e.event_id for e in got.events_after] == [ids[5], ids[6]]
        # start/end continue with /messages exactly where the context stops.
        back = await client.room_messages(room, start=got.start, limit=2)
        assert isinstance(back, nio.RoomMessagesResponse), back
        assert [e.event_id for e in back.chunk] == [ids[1], ids[0]]
        forward = await client.room_messages(
            room, start=got.end, limit=2, direction=nio.MessageDirection.front
        )
        assert isinstance(forward, nio.RoomMessagesResponse), forward
        assert [e.event_id for e in forward.chunk] == [ids[7], ids[8]]
        names = [s for s in got.state if isinstance(s, nio.RoomNameEvent)]
        assert names and names[0].name == "Context"
    finally:
        await client.close()


async def test_context_state_filter_and_errors(owner: Client) -> None:
    room = await owner.create_room(name="before")
    first = await owner.text(room, "first")
    await owner.state(room, "m.room.name", {"name": "after"})
    path = f"v3/rooms/{quote(room)}/context/{quote(first)}"
    # limit=0: only the event, and the state at it (the old name).
    data = await owner.call("GET", path, params={"limit": "0"})
    assert data["events_before"] == [] and data["events_after"] == []
    names = [e["content"]["name"] for e in data["state"] if e["type"] == "m.room.name"]
    assert names == ["before"]
    # The state follows the last event returned.
    data = await owner.call("GET", path, params={"limit": "4"})
    names = [e["content"]["name"] for e in data["state"] if e["type"] == "m.room.name"]
    assert names == ["after"]

    flt = json.dumps({"types": ["m.room.member"], "lazy_load_members": True})
    data = await owner.call("GET", path, params={"limit": "10", "filter": flt})
    assert data["event"]["event_id"] == first  # the filter never applies to the event
    assert {e["type"] for e in data["events_before"] + data["events_after"]} <= {"m.room.member"}
    assert [(e["type"], e["state_key"]) for e in data["state"]] == [("m.room.member", OWNER_ID)]

    error = await owner.call("GET", f"v3/rooms/{quote(room)}/context/%24missing", status=404)
    assert error["errcode"] == "M_NOT_FOUND"
    for params in ({"limit": "-1"}, {"filter": "{broken"}):
        error = await owner.call("GET", path, params=params, status=400)
        assert error["errcode"] in ("M_INVALID_PARAM", "M_BAD_JSON"), params
