"""The published room directory against a real node.

Spec: api/client-server/list_public_rooms.yaml, create_room.yaml (visibility).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from node.directory.service import matches_filter, room_chunk
from tests.conftest import SERVER_NAME
from tests.relations.client import Client


async def test_public_room_is_listed_and_private_is_not(owner: Client) -> None:
    public = await owner.create_room(
        visibility="public",
        name="Town square",
        topic="Everyone welcome",
        room_alias_name="square",
    )
    private = await owner.create_room(name="Diary")
    await owner.state(public, "m.room.avatar", {"url": "mxc://x/y"})

    listing = await owner.call("GET", "v3/publicRooms", auth=False)  # no token needed
    assert [c["room_id"] for c in listing["chunk"]] == [public]
    chunk = listing["chunk"][0]
    assert chunk == {
        "room_id": public,
        "name": "Town square",
        "topic": "Everyone welcome",
        "avatar_url": "mxc://x/y",
        "canonical_alias": f"#square:{SERVER_NAME}",
        "num_joined_members": 1,
        "world_readable": False,
        "guest_can_join": False,
        "join_rule": "public",
    }
    assert listing["total_room_count_estimate"] == 1

    visibility = f"v3/directory/list/room/{quote(private)}"
    assert await owner.call("GET", visibility, auth=False) == {"visibility": "private"}
    await owner.call("PUT", visibility, {"visibility": "public"})
    assert await owner.call("GET", visibility) == {"visibility": "public"}
    listing = await owner.call("POST", "v3/publicRooms", {})
    assert {c["room_id"] for c in listing["chunk"]} == {public, private}
    await owner.call("PUT", f"v3/directory/list/room/{quote(public)}", {"visibility": "private"})
    listing = await owner.call("POST", "v3/publicRooms", {})
    assert [c["room_id"] for c in listing["chunk"]] == [private]


async def test_filter_and_pagination(owner: Client) -> None:
    made = [await owner.create_room(visibility="public", name=f"Room {i}") for i in range(5)]
    space = await owner.create_room(
        visibility="public", name="A space", creation_content={"type": "m.space"}
    )
    found = await owner.call(
        "POST", "v3/publicRooms", {"filter": {"generic_search_term": "room 3"}}
    )
    assert [c["room_id"] for c in found["chunk"]] == [made[3]]
    spaces = await owner.call("POST", "v3/publicRooms", {"filter": {"room_types": ["m.space"]}})
    assert [c["room_id"] for c in spaces["chunk"]] == [space]
    assert spaces["chunk"][0]["room_type"] == "m.space"
    plain = await owner.call("POST", "v3/publicRooms", {"filter": {"room_types": [None]}})
    assert {c["room_id"] for c in plain["chunk"]} == set(made)

    seen: list[str] = []
    params = {"limit": "4"}
    page = await owner.call("GET", "v3/publicRooms", params=params)
    seen += [c["room_id"] for c in page["chunk"]]
    assert "prev_batch" not in page
    page = await owner.call(
        "GET", "v3/publicRooms", params={"limit": "4", "since": page["next_batch"]}
    )
    seen += [c["room_id"] for c in page["chunk"]]
    assert "next_batch" not in page and page["prev_batch"] == "o0"
    assert sorted(seen) == sorted([*made, space])


async def test_directory_errors(owner: Client) -> None:
    room = await owner.create_room()
    # Another server's directory is asked of it; tests reach no other server.
    other_server = await owner.call(
        "GET", "v3/publicRooms", params={"server": "example.org"}, status=404
    )
    assert "federation" in other_server["error"]
    await owner.call("GET", "v3/publicRooms", params={"server": SERVER_NAME})
    cases: list[tuple[str, str, Any, dict[str, str] | None, str]] = [
        ("GET", "v3/publicRooms", None, {"limit": "x"}, "M_INVALID_PARAM"),
        ("GET", "v3/publicRooms", None, {"since": "garbage"}, "M_INVALID_PARAM"),
        ("POST", "v3/publicRooms", {"limit": "ten"}, None, "M_BAD_JSON"),
        ("POST", "v3/publicRooms", {"limit": 0}, None, "M_INVALID_PARAM"),
        ("POST", "v3/publicRooms", {"filter": []}, None, "M_BAD_JSON"),
        ("POST", "v3/publicRooms", {"filter": {"room_types": [1]}}, None, "M_BAD_JSON"),
        (
            "PUT",
            f"v3/directory/list/room/{quote(room)}",
            {"visibility": "secret"},
            None,
            "M_INVALID_PARAM",
        ),
    ]
    for method, path, body, params, errcode in cases:
        error = await owner.call(method, path, body, params=params, status=400)
        assert error["errcode"] == errcode, (method, path, body, params)
    error = await owner.call("GET", "v3/directory/list/room/!unknown:x", status=404)
    assert error["errcode"] == "M_NOT_FOUND"
    await owner.call("POST", "v3/publicRooms", {}, auth=False, status=401)


def test_room_chunk_topic_and_defaults() -> None:
    state: dict[tuple[str, str], dict[str, Any]] = {
        ("m.room.topic", ""): {
            "topic": "fallback",
            "m.topic": {"m.text": [{"mimetype": "text/html", "body": "<b>x</b>"}, {"body": "x"}]},
        },
        ("m.room.history_visibility", ""): {"history_visibility": "world_readable"},
        ("m.room.guest_access", ""): {"guest_access": "can_join"},
    }
    chunk = room_chunk("!r:x", state, 3)
    assert chunk == {
        "room_id": "!r:x",
        "num_joined_members": 3,
        "world_readable": True,
        "guest_can_join": True,
        "topic": "x",
    }
    assert matches_filter(chunk, "X", None)
    assert not matches_filter(chunk, "y", None)
    assert matches_filter(chunk, None, [None])
    assert not matches_filter(chunk, None, ["m.space"])
