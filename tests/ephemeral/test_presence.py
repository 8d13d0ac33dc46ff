"""Presence against a real node (presence.md, presence.yaml, sync.yaml set_presence):
on in the laptop profile, off in the small ones."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nio
import pytest

from node.app import RunningNode, serve
from node.config import load_config
from tests.conftest import OWNER, PASSWORD
from tests.ephemeral.conftest import OWNER_ID, call, login, send_text, sync


def presence_events(response: Any) -> list[dict[str, Any]]:
    return list(response.get("presence", {}).get("events", []))


async def test_nio_set_and_get_presence(client_url: str) -> None:
    client = nio.AsyncClient(client_url, OWNER, device_id="NIODEV")
    try:
        await client.login(PASSWORD)
        first = await client.sync(timeout=0, set_presence="online")
        assert isinstance(first, nio.SyncResponse), first
        [mine] = [e for e in first.presence_events if e.user_id == client.user_id]
        assert mine.presence == "online" and mine.currently_active is True
        assert mine.last_active_ago is not None and mine.last_active_ago < 60_000

        done = await client.set_presence("unavailable", "out to lunch")
        assert isinstance(done, nio.PresenceSetResponse), done
        got = await client.get_presence(client.user_id)
        assert isinstance(got, nio.PresenceGetResponse), got
        assert (got.presence, got.status_msg) == ("unavailable", "out to lunch")
        assert isinstance(got.last_active_ago, int)
        second = await client.sync(timeout=0, since=first.next_batch)
        assert isinstance(second, nio.SyncResponse), second
        assert [(e.presence, e.status_msg) for e in second.presence_events] == [
            ("unavailable", "out to lunch")
        ]
    finally:
        await client.close()


async def test_sync_set_presence_and_activity(
    client_url: str, http: aiohttp.ClientSession, v3: str
) -> None:
    token = await login(http, client_url, "DEV1")
    # set_presence=offline: polling does not bring the user online.
    data = await sync(http, v3, token, set_presence="offline")
    assert presence_events(data) == []
    got = await call(http, "GET", f"{v3}/presence/{OWNER_ID}/status", token)
    assert got == {"presence": "offline"}
    # unavailable: the user is idle.
    data = await sync(http, v3, token, data["next_batch"], set_presence="unavailable")
    [event] = presence_events(data)
    assert event["sender"] == OWNER_ID and event["type"] == "m.presence"
    assert event["content"]["presence"] == "unavailable"
    # Sending a message is activity: back online, and a waiting /sync hears of it.
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    url = f"{v3}/presence/{OWNER_ID}/status"
    await call(http, "PUT", url, token, {"presence": "unavailable"})
    since = (await sync(http, v3, token, data["next_batch"], set_presence="offline"))["next_batch"]
    waiting = asyncio.ensure_future(
        sync(http, v3, token, since, timeout="60000", set_presence="offline")
    )
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await send_text(http, v3, token, room_id, "hello")
    data = await waiting
    assert time.monotonic() - started < 10
    [event] = presence_events(data)
    assert event["content"]["presence"] == "online"
    assert event["content"]["currently_active"] is True
    assert 0 <= event["content"]["last_active_ago"] < 60_000
    # Polling again with nothing new waits and returns no presence (last_active_ago
    # changing by itself is not news).
    quiet = await sync(http, v3, token, data["next_batch"], timeout="200")
    assert presence_events(quiet) == []
    # The presence filter.
    for filt in ({"presence": {"not_types": ["m.presence"]}}, {"presence": {"limit": 0}}):
        data = await sync(http, v3, token, filter=json.dumps(filt))
        assert presence_events(data) == [], filt


@pytest.mark.parametrize(
    ("method", "user", "body", "status", "errcode"),
    [
        ("PUT", "@someone:else.example", {"presence": "online"}, 403, "M_FORBIDDEN"),
        ("PUT", OWNER_ID, {"presence": "busy"}, 400, "M_INVALID_PARAM"),
        ("PUT", OWNER_ID, {"presence": 1}, 400, "M_BAD_JSON"),
        ("PUT", OWNER_ID, {"status_msg": "hi"}, 400, "M_MISSING_PARAM"),
        ("PUT", OWNER_ID, {"presence": "online", "status_msg": 5}, 400, "M_BAD_JSON"),
        ("PUT", OWNER_ID, {"presence": "online", "status_msg": "x" * 2000}, 400, "M_INVALID_PARAM"),
        ("PUT", OWNER_ID, ["online"], 400, "M_BAD_JSON"),
        ("GET", "@someone:else.example", None, 403, "M_FORBIDDEN"),
        ("GET", "not-a-user", None, 400, "M_INVALID_PARAM"),
    ],
)
async def test_bad_presence_requests(
    http: aiohttp.ClientSession,
    client_url: str,
    v3: str,
    method: str,
    user: str,
    body: Any,
    status: int,
    errcode: str,
) -> None:
    token = await login(http, client_url, "DEV1")
    url = f"{v3}/presence/{user}/status"
    data = await call(http, method, url, token, body, status=status)
    assert data["errcode"] == errcode


@pytest.fixture
async def small_node(data_dir: Path) -> AsyncIterator[RunningNode]:
    """A node with the raspberry-pi profile, which turns presence off."""
    config = load_config(data_dir, environ={}, overrides={"profile": "raspberry-pi"})
    assert config.presence.enabled is False
    running = await serve(config)
    try:
        yield running
    finally:
        await running.stop()


async def test_presence_off_in_the_small_profiles(
    small_node: RunningNode, http: aiohttp.ClientSession
) -> None:
    client_url = f"http://{small_node.listeners['client']}"
    v3 = f"{client_url}/_matrix/client/v3"
    token = await login(http, client_url, "DEV1")
    url = f"{v3}/presence/{OWNER_ID}/status"
    # Accepted, as Synapse does, but nothing changes.
    assert await call(http, "PUT", url, token, {"presence": "online", "status_msg": "hi"}) == {}
    assert await call(http, "GET", url, token) == {"presence": "offline"}
    data = await sync(http, v3, token, set_presence="online")
    assert "presence" not in data
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"]
    await send_text(http, v3, token, room_id, "hello")
    data = await sync(http, v3, token, data["next_batch"])
    assert "presence" not in data
    # Requests are still checked.
    data = await call(http, "PUT", url, token, {"presence": "busy"}, status=400)
    assert data["errcode"] == "M_INVALID_PARAM"
    other = f"{v3}/presence/@someone:else.example/status"
    data = await call(http, "PUT", other, token, {"presence": "online"}, status=403)
    assert data["errcode"] == "M_FORBIDDEN"
