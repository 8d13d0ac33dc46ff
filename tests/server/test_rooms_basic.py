"""Rooms on a real node: create, send with transaction IDs, state, single events.
The stored events must be real Matrix events: hashed, signed, authorised."""

from __future__ import annotations

from typing import Any

import aiohttp
import nio
import pytest

from node.app import RunningNode, serve
from node.config import Config
from node.events.hashing import check_content_hash, compute_event_id
from node.events.signing import get_verify_key, verify_event_signature
from node.rooms.auth import check_auth_rules
from tests.client import call
from tests.conftest import OWNER, PASSWORD, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"


@pytest.mark.parametrize("version", ["10", "11", "12"])
async def test_created_room_events_are_valid_matrix_events(
    client_url: str, http: aiohttp.ClientSession, token: str, node: RunningNode, version: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    created = await call(
        http,
        "POST",
        f"{v3}/createRoom",
        token,
        {"room_version": version, "name": "Kitchen", "topic": "food"},
    )
    room_id = created["room_id"]
    if version == "12":
        assert ":" not in room_id
    else:
        assert room_id.endswith(f":{SERVER_NAME}")
    sent = await call(
        http,
        "PUT",
        f"{v3}/rooms/{room_id}/send/m.room.message/t1",
        token,
        {"msgtype": "m.text", "body": "hello"},
    )
    store = node.node.events
    ids = await store.get_current_state_ids(room_id)
    assert {k[0] for k in ids} >= {
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.history_visibility",
        "m.room.name",
        "m.room.topic",
    }
    every = await store.get_events([*ids.values(), sent["event_id"]])
    verify_key = get_verify_key(node.node.server_key.signing_key)
    create = every[ids[("m.room.create", "")]].event
    for stored in every.values():
        ev = stored.event
        raw = dict(ev.raw)
        assert check_content_hash(raw)
        verify_event_signature(raw, SERVER_NAME, verify_key, ev.room_version)
        assert compute_event_id(raw, ev.room_version) == ev.event_id
        if ev.type != "m.room.create":
            auth = [
                every[a].event if a in every else (await store.get_event(a)).event
                for a in ev.auth_event_ids
            ]
            check_auth_rules(ev, auth, create)
    msg = every[sent["event_id"]].event
    assert msg.content == {"msgtype": "m.text", "body": "hello"}


async def test_send_is_idempotent_per_transaction_id_and_device(
    client_url: str, http: aiohttp.ClientSession, token: str, node: RunningNode
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    url = f"{v3}/rooms/{room_id}/send/m.room.message/same-txn"
    first = await call(http, "PUT", url, token, {"msgtype": "m.text", "body": "once"})
    again = await call(http, "PUT", url, token, {"msgtype": "m.text", "body": "once"})
    assert first == again
    # Another device's identical txn ID is another event.
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER},
        "password": PASSWORD,
        "device_id": "DEV2",
    }
    async with http.post(f"{client_url}/_matrix/client/v3/login", json=body) as r:
        token2 = (await r.json())["access_token"]
    other = await call(http, "PUT", url, token2, {"msgtype": "m.text", "body": "once"})
    assert other["event_id"] != first["event_id"]


async def test_transaction_ids_survive_a_restart(config: Config) -> None:
    running = await serve(config)
    url = f"http://{running.listeners['client']}"
    client = nio.AsyncClient(url, OWNER)
    try:
        await client.login(PASSWORD, device_name="restart test")
        created = await client.room_create(name="r")
        assert isinstance(created, nio.RoomCreateResponse), created
        first = await client.room_send(
            created.room_id, "m.room.message", {"msgtype": "m.text", "body": "x"}, tx_id="T42"
        )
        assert isinstance(first, nio.RoomSendResponse), first
        token, device = client.access_token, client.device_id
    finally:
        await client.close()
        await running.stop()
    running = await serve(config)
    try:
        url = f"http://{running.listeners['client']}"
        client = nio.AsyncClient(url, OWNER, device_id=device)
        client.access_token = token
        client.user_id = f"@{OWNER}:{SERVER_NAME}"
        again = await client.room_send(
            created.room_id, "m.room.message", {"msgtype": "m.text", "body": "x"}, tx_id="T42"
        )
        assert isinstance(again, nio.RoomSendResponse), again
        assert again.event_id == first.event_id
        await client.close()
        assert await running.node.events.count_events(created.room_id) == 8
    finally:
        await running.stop()


async def test_state_put_get_and_single_event(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {"preset": "public_chat"}))[
        "room_id"
    ]
    put = await call(
        http, "PUT", f"{v3}/rooms/{room_id}/state/m.room.topic", token, {"topic": "new topic"}
    )
    got = await call(http, "GET", f"{v3}/rooms/{room_id}/state/m.room.topic/", token)
    assert got == {"topic": "new topic"}
    await call(http, "PUT", f"{v3}/rooms/{room_id}/state/org.example.thing/key1", token, {"v": 1})
    got = await call(http, "GET", f"{v3}/rooms/{room_id}/state/org.example.thing/key1", token)
    assert got == {"v": 1}
    rules = await call(http, "GET", f"{v3}/rooms/{room_id}/state/m.room.join_rules", token)
    assert rules == {"join_rule": "public"}
    ev = await call(http, "GET", f"{v3}/rooms/{room_id}/event/{put['event_id']}", token)
    assert ev["type"] == "m.room.topic" and ev["state_key"] == ""
    assert ev["sender"] == OWNER_ID and ev["room_id"] == room_id
    assert ev["unsigned"]["age"] >= 0
    state = await call(http, "GET", f"{v3}/rooms/{room_id}/state", token)
    assert {(e["type"], e["state_key"]) for e in state} >= {
        ("m.room.topic", ""),
        ("org.example.thing", "key1"),
    }
    joined = await call(http, "GET", f"{v3}/joined_rooms", token)
    assert room_id in joined["joined_rooms"]
    missing = await call(
        http, "GET", f"{v3}/rooms/{room_id}/state/m.room.avatar", token, status=404
    )
    assert missing["errcode"] == "M_NOT_FOUND"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "errcode"),
    [
        ("POST", "/createRoom", {"room_version": "9"}, 400, "M_UNSUPPORTED_ROOM_VERSION"),
        ("POST", "/createRoom", {"preset": "party"}, 400, "M_BAD_JSON"),
        ("POST", "/createRoom", {"name": 5}, 400, "M_BAD_JSON"),
        (
            "POST",
            "/createRoom",
            {"initial_state": [{"type": "m.room.create", "content": {}}]},
            400,
            "M_BAD_JSON",
        ),
        (
            "POST",
            "/createRoom",
            {"power_level_content_override": {"users_default": 1.5}},
            400,
            "M_BAD_JSON",
        ),
        ("PUT", "/rooms/!nope:elsewhere/send/m.room.message/1", {"body": "x"}, 403, "M_FORBIDDEN"),
        ("PUT", "/rooms/not-a-room/send/m.room.message/1", {"body": "x"}, 400, "M_INVALID_PARAM"),
        ("PUT", "/rooms/{room}/send/m.room.message/2", {"n": 1.5}, 400, "M_BAD_JSON"),
        ("PUT", "/rooms/{room}/send/m.room.message/3", {"n": 2**60}, 400, "M_BAD_JSON"),
        ("PUT", "/rooms/{room}/send/m.room.message/4", {"b": "x" * 70000}, 413, "M_TOO_LARGE"),
        ("PUT", "/rooms/{room}/state/m.room.create", {}, 403, "M_FORBIDDEN"),
        ("PUT", "/rooms/{room}/state/m.room.power_levels", {"users": "x"}, 403, "M_FORBIDDEN"),
        ("GET", "/rooms/{room}/event/$nope", None, 404, "M_NOT_FOUND"),
        ("GET", "/rooms/!other:elsewhere/state", None, 403, "M_FORBIDDEN"),
    ],
)
async def test_bad_room_requests(
    client_url: str,
    http: aiohttp.ClientSession,
    token: str,
    node: RunningNode,
    method: str,
    path: str,
    body: Any,
    status: int,
    errcode: str,
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    before = await node.node.events.count_events()
    got = await call(http, method, v3 + path.replace("{room}", room_id), token, body, status=status)
    assert got["errcode"] == errcode
    assert await node.node.events.count_events() == before  # nothing stored


async def test_nio_room_flow(client_url: str) -> None:
    client = nio.AsyncClient(client_url, OWNER)
    try:
        await client.login(PASSWORD)
        created = await client.room_create(name="Garden", topic="plants")
        assert isinstance(created, nio.RoomCreateResponse), created
        sent = await client.room_send(
            created.room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"}
        )
        assert isinstance(sent, nio.RoomSendResponse), sent
        state = await client.room_get_state_event(created.room_id, "m.room.name")
        assert isinstance(state, nio.RoomGetStateEventResponse), state
        assert state.content == {"name": "Garden"}
        rooms = await client.joined_rooms()
        assert isinstance(rooms, nio.JoinedRoomsResponse)
        assert created.room_id in rooms.rooms
    finally:
        await client.close()


async def test_transaction_ids_are_scoped_to_the_path(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    v3 = f"{client_url}/_matrix/client/v3"
    room_a = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    room_b = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    body = {"msgtype": "m.text", "body": "same txn"}
    a = await call(http, "PUT", f"{v3}/rooms/{room_a}/send/m.room.message/T", token, body)
    b = await call(http, "PUT", f"{v3}/rooms/{room_b}/send/m.room.message/T", token, body)
    c = await call(http, "PUT", f"{v3}/rooms/{room_a}/send/m.reaction/T", token, {})
    assert len({a["event_id"], b["event_id"], c["event_id"]}) == 3
    ev = await call(http, "GET", f"{v3}/rooms/{room_b}/event/{b['event_id']}", token)
    assert ev["room_id"] == room_b
