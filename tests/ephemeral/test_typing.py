"""Typing notifications against a real node (typing_notifications.md, typing.yaml)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import nio
import pytest

from node.app import RunningNode
from tests.conftest import OWNER, PASSWORD
from tests.ephemeral.conftest import (
    BOB,
    OWNER_ID,
    call,
    ephemeral,
    of_type,
    raw_call,
    send_text,
    sync,
)


async def test_typing_reaches_another_device_and_times_out(
    client_url: str, http: aiohttp.ClientSession, v3: str, token2: str
) -> None:
    client = nio.AsyncClient(client_url, OWNER, device_id="NIODEV")
    try:
        await client.login(PASSWORD)
        created = await client.room_create(name="Typing room")
        assert isinstance(created, nio.RoomCreateResponse)
        room_id = created.room_id
        since = (await sync(http, v3, token2))["next_batch"]

        typed = await client.room_typing(room_id, True, timeout=600)
        assert isinstance(typed, nio.RoomTypingResponse), typed
        data = await sync(http, v3, token2, since)
        assert of_type(ephemeral(data, room_id), "m.typing") == [
            {"type": "m.typing", "content": {"user_ids": [OWNER_ID]}}
        ]
        # An initial sync also shows who is typing now.
        initial = await sync(http, v3, token2)
        assert of_type(ephemeral(initial, room_id), "m.typing")[0]["content"] == {
            "user_ids": [OWNER_ID]
        }
        # The timeout ends it, and a waiting /sync hears of it at once.
        started = time.monotonic()
        data = await sync(http, v3, token2, data["next_batch"], timeout="10000")
        assert time.monotonic() - started < 8
        assert of_type(ephemeral(data, room_id), "m.typing") == [
            {"type": "m.typing", "content": {"user_ids": []}}
        ]
        # nio parses the event.
        response = await client.sync(timeout=0, full_state=True)
        assert isinstance(response, nio.SyncResponse), response
    finally:
        await client.close()


async def test_long_poll_wakes_on_typing(
    http: aiohttp.ClientSession, v3: str, token: str, token2: str
) -> None:
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    since = (await sync(http, v3, token2))["next_batch"]
    waiting = asyncio.ensure_future(sync(http, v3, token2, since, timeout="60000"))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await call(
        http,
        "PUT",
        f"{v3}/rooms/{room_id}/typing/{OWNER_ID}",
        token,
        {"typing": True, "timeout": 30000},
    )
    data = await waiting
    assert time.monotonic() - started < 10, "the long poll did not wake on typing"
    assert of_type(ephemeral(data, room_id), "m.typing")[0]["content"]["user_ids"] == [OWNER_ID]
    # Typing again before the timeout is no news: nothing wakes the next poll.
    await call(http, "PUT", f"{v3}/rooms/{room_id}/typing/{OWNER_ID}", token, {"typing": True})
    quiet = await sync(http, v3, token2, data["next_batch"], timeout="300")
    assert not ephemeral(quiet, room_id)
    # Stopping is news.
    await call(http, "PUT", f"{v3}/rooms/{room_id}/typing/{OWNER_ID}", token, {"typing": False})
    stopped = await sync(http, v3, token2, quiet["next_batch"])
    assert of_type(ephemeral(stopped, room_id), "m.typing")[0]["content"] == {"user_ids": []}


async def test_sending_a_message_ends_typing_and_others_are_listed(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {"preset": "public_chat"}))[
        "room_id"
    ]
    await node.node.rooms.send(BOB, room_id, "m.room.member", {"membership": "join"}, state_key=BOB)
    node.node.typing.set_typing(room_id, BOB, True, 30000)
    await call(http, "PUT", f"{v3}/rooms/{room_id}/typing/{OWNER_ID}", token, {"typing": True})
    data = await sync(http, v3, token)
    assert of_type(ephemeral(data, room_id), "m.typing")[0]["content"]["user_ids"] == sorted(
        [OWNER_ID, BOB]
    )
    await send_text(http, v3, token, room_id, "done typing")
    data = await sync(http, v3, token, data["next_batch"])
    assert of_type(ephemeral(data, room_id), "m.typing")[0]["content"]["user_ids"] == [BOB]
    # Bob leaves: he is no longer typing.
    await node.node.rooms.send(
        BOB, room_id, "m.room.member", {"membership": "leave"}, state_key=BOB
    )
    data = await sync(http, v3, token, data["next_batch"])
    assert of_type(ephemeral(data, room_id), "m.typing")[0]["content"]["user_ids"] == []


async def test_ephemeral_filter_leaves_typing_out(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    await call(http, "PUT", f"{v3}/rooms/{room_id}/typing/{OWNER_ID}", token, {"typing": True})
    for ephemeral_filter in (
        {"not_types": ["m.typing"]},
        {"not_rooms": [room_id]},
        {"limit": 0},
    ):
        filt = json.dumps({"room": {"ephemeral": ephemeral_filter}})
        data = await sync(http, v3, token, filter=filt)
        assert not of_type(ephemeral(data, room_id), "m.typing"), filt


@pytest.mark.parametrize(
    ("user", "body", "status", "errcode"),
    [
        ("@someone:else.example", {"typing": True}, 403, "M_FORBIDDEN"),
        (OWNER_ID, {"typing": "yes"}, 400, "M_BAD_JSON"),
        (OWNER_ID, {"timeout": 100}, 400, "M_MISSING_PARAM"),
        (OWNER_ID, {"typing": True, "timeout": -1}, 400, "M_BAD_JSON"),
        (OWNER_ID, {"typing": True, "timeout": "soon"}, 400, "M_BAD_JSON"),
        (OWNER_ID, [True], 400, "M_BAD_JSON"),
    ],
)
async def test_bad_typing_requests(
    http: aiohttp.ClientSession,
    v3: str,
    token: str,
    user: str,
    body: object,
    status: int,
    errcode: str,
) -> None:
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    data = await call(
        http, "PUT", f"{v3}/rooms/{room_id}/typing/{user}", token, body, status=status
    )
    assert data["errcode"] == errcode


async def test_typing_needs_a_joined_room_and_json(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    url = f"{v3}/rooms/!nowhere:elsewhere.example/typing/{OWNER_ID}"
    data = await call(http, "PUT", url, token, {"typing": True}, status=403)
    assert data["errcode"] == "M_FORBIDDEN"
    data = await call(http, "PUT", f"{v3}/rooms/nope/typing/{OWNER_ID}", token, {}, status=400)
    assert data["errcode"] == "M_INVALID_PARAM"
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    status, data = await raw_call(
        http, "PUT", f"{v3}/rooms/{room_id}/typing/{OWNER_ID}", token, b"{typing"
    )
    assert (status, data["errcode"]) == (400, "M_NOT_JSON")
