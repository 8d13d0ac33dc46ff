"""/sync and /messages against a real node, with matrix-nio and raw requests."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import nio
import pytest

from node.app import RunningNode
from tests.client import call
from tests.conftest import OWNER, PASSWORD, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"


async def send_text(
    http: aiohttp.ClientSession, url: str, token: str, room_id: str, body: str
) -> str:
    data = await call(
        http,
        "PUT",
        f"{url}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{body}",
        token,
        {"msgtype": "m.text", "body": body},
    )
    return str(data["event_id"])


async def test_nio_initial_and_incremental_sync(client_url: str) -> None:
    client = nio.AsyncClient(client_url, OWNER)
    try:
        await client.login(PASSWORD)
        created = await client.room_create(name="Sync room", topic="t")
        assert isinstance(created, nio.RoomCreateResponse)
        first = await client.sync(timeout=0, full_state=True)
        assert isinstance(first, nio.SyncResponse), first
        room = client.rooms[created.room_id]
        assert room.name == "Sync room"
        assert room.topic == "t"
        assert OWNER_ID in room.users
        sent = await client.room_send(
            created.room_id, "m.room.message", {"msgtype": "m.text", "body": "incremental"}
        )
        assert isinstance(sent, nio.RoomSendResponse)
        second = await client.sync(timeout=0, since=first.next_batch)
        assert isinstance(second, nio.SyncResponse), second
        events = second.rooms.join[created.room_id].timeline.events
        assert [e.event_id for e in events] == [sent.event_id]
        assert events[0].body == "incremental"
        assert second.next_batch != first.next_batch
        # Nothing new: an immediate sync returns no room at all.
        third = await client.sync(timeout=0, since=second.next_batch)
        assert isinstance(third, nio.SyncResponse)
        assert created.room_id not in third.rooms.join
    finally:
        await client.close()


async def test_long_poll_wakes_on_send_not_on_timeout(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    since = (await call(http, "GET", f"{v3}/sync", token))["next_batch"]

    async def later() -> str:
        await asyncio.sleep(0.3)
        return await send_text(http, client_url, token, room_id, "wake")

    started = time.monotonic()
    sync_task = asyncio.ensure_future(
        call(http, "GET", f"{v3}/sync", token, since=since, timeout="60000")
    )
    event_id = await later()
    data = await sync_task
    elapsed = time.monotonic() - started
    events = data["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["event_id"] for e in events] == [event_id]
    assert elapsed < 30, "the long poll waited for its timeout instead of waking on the send"


async def test_long_poll_times_out_empty(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    since = (await call(http, "GET", f"{v3}/sync", token))["next_batch"]
    data = await call(http, "GET", f"{v3}/sync", token, since=since, timeout="200")
    assert data["next_batch"] == since
    assert not data.get("rooms", {}).get("join")


async def test_limited_timeline_and_messages_pagination(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {"name": "n"}))["room_id"]
    since = (await call(http, "GET", f"{v3}/sync", token))["next_batch"]
    sent = [await send_text(http, client_url, token, room_id, f"m{i}") for i in range(5)]
    await call(http, "PUT", f"{v3}/rooms/{room_id}/state/m.room.topic", token, {"topic": "x"})
    sent += [await send_text(http, client_url, token, room_id, f"m{i}") for i in range(5, 25)]
    sent.append(
        (
            await call(
                http, "PUT", f"{v3}/rooms/{room_id}/state/m.room.name", token, {"name": "late"}
            )
        )["event_id"]
    )
    filt = json.dumps({"room": {"timeline": {"limit": 5}}})
    data = await call(http, "GET", f"{v3}/sync", token, since=since, filter=filt)
    room = data["rooms"]["join"][room_id]
    timeline = room["timeline"]
    assert timeline["limited"] is True
    assert len(timeline["events"]) == 5
    assert timeline["events"][-1]["event_id"] == sent[-1]
    # The topic changed in the gap: it is in the state block.
    assert [(e["type"], e["content"]) for e in room["state"]["events"]] == [
        ("m.room.topic", {"topic": "x"})
    ]
    # Paginate back from prev_batch: every earlier message, newest first, no duplicates.
    seen: list[str] = []
    token_from = timeline["prev_batch"]
    for _ in range(20):
        page = await call(
            http,
            "GET",
            f"{v3}/rooms/{room_id}/messages",
            token,
            **{"from": token_from, "dir": "b", "limit": "7"},
        )
        seen += [e["event_id"] for e in page["chunk"]]
        if "end" not in page:
            break
        token_from = page["end"]
    timeline_ids = [e["event_id"] for e in timeline["events"]]
    assert len(seen) == len(set(seen))
    expected_older = [e for e in reversed(sent) if e not in timeline_ids]
    assert [e for e in seen if e in sent] == expected_older
    # The first events of the room come last (create is the oldest).
    first_page = await call(
        http,
        "GET",
        f"{v3}/rooms/{room_id}/messages",
        token,
        **{"from": token_from, "dir": "b", "limit": "50"},
    )
    assert "end" not in first_page
    forward = await call(
        http, "GET", f"{v3}/rooms/{room_id}/messages", token, **{"dir": "f", "limit": "1000"}
    )
    assert forward["chunk"][0]["type"] == "m.room.create"
    fwd_msgs = [e["event_id"] for e in forward["chunk"] if e["event_id"] in sent]
    assert fwd_msgs == sent


async def test_sync_filters_types_and_lazy_members(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {"name": "f"}))["room_id"]
    await send_text(http, client_url, token, room_id, "hello")
    filt = {
        "room": {
            "timeline": {"types": ["m.room.message"]},
            "state": {"lazy_load_members": True, "not_types": ["m.room.name"]},
        }
    }
    data = await call(http, "GET", f"{v3}/sync", token, filter=json.dumps(filt))
    room = data["rooms"]["join"][room_id]
    assert {e["type"] for e in room["timeline"]["events"]} == {"m.room.message"}
    state_types = {e["type"] for e in room["state"]["events"]}
    assert "m.room.name" not in state_types
    assert "m.room.member" in state_types
    assert room["summary"]["m.joined_member_count"] == 1
    not_rooms = {"room": {"not_rooms": [room_id]}}
    data = await call(http, "GET", f"{v3}/sync", token, filter=json.dumps(not_rooms))
    assert room_id not in data.get("rooms", {}).get("join", {})


@pytest.mark.parametrize(
    ("path", "params", "errcode"),
    [
        ("/sync", {"since": "garbage"}, "M_INVALID_PARAM"),
        ("/sync", {"since": "s999999999999999999999999999999"}, "M_INVALID_PARAM"),
        ("/rooms/{room}/messages", {"from": "p999999999999999999999999999999"}, "M_INVALID_PARAM"),
        ("/sync", {"timeout": "soon"}, "M_INVALID_PARAM"),
        ("/sync", {"full_state": "yes"}, "M_INVALID_PARAM"),
        ("/sync", {"filter": "{not json"}, "M_NOT_JSON"),
        ("/sync", {"filter": "12345"}, "M_INVALID_PARAM"),
        ("/sync", {"filter": '{"room": {"timeline": {"limit": -1}}}'}, "M_BAD_JSON"),
        ("/sync", {"filter": '{"room": []}'}, "M_BAD_JSON"),
        ("/rooms/{room}/messages", {"dir": "sideways"}, "M_INVALID_PARAM"),
        ("/rooms/{room}/messages", {"from": "zzz"}, "M_INVALID_PARAM"),
        ("/rooms/{room}/messages", {"limit": "many"}, "M_INVALID_PARAM"),
    ],
)
async def test_bad_sync_and_messages_params(
    client_url: str,
    http: aiohttp.ClientSession,
    token: str,
    path: str,
    params: dict[str, str],
    errcode: str,
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    data = await call(
        http, "GET", v3 + path.replace("{room}", room_id), token, status=400, **params
    )
    assert data["errcode"] == errcode


async def test_members_and_joined_members(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    members = await call(http, "GET", f"{v3}/rooms/{room_id}/members", token)
    assert [(e["state_key"], e["content"]["membership"]) for e in members["chunk"]] == [
        (OWNER_ID, "join")
    ]
    joined = await call(http, "GET", f"{v3}/rooms/{room_id}/joined_members", token)
    assert list(joined["joined"]) == [OWNER_ID]


async def test_joined_rooms_carry_unread_notifications(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    data = await call(http, "GET", f"{v3}/sync", token)
    counts = data["rooms"]["join"][room_id]["unread_notifications"]
    # The owner's own messages never notify the owner.
    assert counts == {"notification_count": 0, "highlight_count": 0}


async def test_message_from_another_user_counts_as_unread(
    client_url: str, http: aiohttp.ClientSession, token: str, node: RunningNode
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {"preset": "public_chat"}))[
        "room_id"
    ]
    bob = "@bob:remote.example"
    # Until federation exists, a remote user's events enter through the room service.
    await node.node.rooms.send(bob, room_id, "m.room.member", {"membership": "join"}, state_key=bob)
    await node.node.rooms.send(
        bob, room_id, "m.room.message", {"msgtype": "m.text", "body": f"hello {OWNER}"}
    )
    data = await call(http, "GET", f"{v3}/sync", token)
    counts = data["rooms"]["join"][room_id]["unread_notifications"]
    assert counts["notification_count"] == 1


async def test_a_display_name_change_is_not_a_newly_joined_room(
    http: aiohttp.ClientSession, client_url: str, token: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room = (await call(http, "POST", f"{v3}/createRoom", token, {"name": "Renames"}))["room_id"]
    await send_text(http, client_url, token, room, "before")
    since = (await call(http, "GET", f"{v3}/sync", token))["next_batch"]
    profile = f"{v3}/profile/{OWNER_ID}/displayname"
    await call(http, "PUT", profile, token, {"displayname": "New Name"})
    later = await call(http, "GET", f"{v3}/sync?since={since}", token)
    joined = later["rooms"]["join"][room]
    # Only the new member event: not the whole room again (no name, no old message).
    timeline = joined["timeline"]["events"]
    assert [(e["type"], e["content"].get("displayname")) for e in timeline] == [
        ("m.room.member", "New Name")
    ]
    assert joined["state"]["events"] == []
