"""Account data and room tags over HTTP, and their place in /sync."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import aiohttp
import nio
import pytest

from node.app import RunningNode, serve
from node.config import Config
from tests.conftest import OWNER, PASSWORD
from tests.users.conftest import OWNER_ID, call, login

ME = quote(OWNER_ID)


async def new_room(http: aiohttp.ClientSession, v3: str, token: str) -> str:
    return str((await call(http, "POST", f"{v3}/createRoom", token, {}))["room_id"])


async def sync(
    http: aiohttp.ClientSession, v3: str, token: str, since: str | None = None, **params: str
) -> dict[str, Any]:
    query = {"timeout": "0", **params}
    if since is not None:
        query["since"] = since
    async with http.get(
        f"{v3}/sync", params=query, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        body = await r.json()
        assert r.status == 200, body
        return dict(body)


def global_events(response: dict[str, Any]) -> dict[str, Any]:
    return {e["type"]: e["content"] for e in response.get("account_data", {}).get("events", [])}


def room_events(response: dict[str, Any], room_id: str) -> dict[str, Any]:
    room = response.get("rooms", {}).get("join", {}).get(room_id, {})
    return {e["type"]: e["content"] for e in room.get("account_data", {}).get("events", [])}


async def test_global_and_room_account_data_round_trip(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    room_id = await new_room(http, v3, token)
    url = f"{v3}/user/{ME}/account_data/org.example.config"
    await call(http, "PUT", url, token, {"theme": "dark", "ratio": 0.5})
    assert await call(http, "GET", url, token) == {"theme": "dark", "ratio": 0.5}
    await call(http, "PUT", url, token, {"theme": "light"})
    assert await call(http, "GET", url, token) == {"theme": "light"}

    room_url = f"{v3}/user/{ME}/rooms/{room_id}/account_data/org.example.config"
    missing = await call(http, "GET", room_url, token, status=404)
    assert missing["errcode"] == "M_NOT_FOUND"  # no fallback to the global item
    await call(http, "PUT", room_url, token, {"pinned": True})
    assert await call(http, "GET", room_url, token) == {"pinned": True}
    assert await call(http, "GET", url, token) == {"theme": "light"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "errcode"),
    [
        ("GET", "/user/@bob:elsewhere/account_data/a.b", None, 403, "M_FORBIDDEN"),
        ("PUT", "/user/@bob:elsewhere/account_data/a.b", {}, 403, "M_FORBIDDEN"),
        ("PUT", "/user/{me}/account_data/m.fully_read", {}, 405, "M_BAD_JSON"),
        ("PUT", "/user/{me}/account_data/m.push_rules", {}, 405, "M_BAD_JSON"),
        ("PUT", "/user/{me}/rooms/{room}/account_data/m.fully_read", {}, 405, "M_BAD_JSON"),
        ("PUT", "/user/{me}/rooms/{room}/account_data/m.push_rules", {}, 405, "M_BAD_JSON"),
        ("PUT", "/user/{me}/account_data/a.b", [1, 2], 400, "M_BAD_JSON"),
        ("GET", "/user/{me}/account_data/never.set", None, 404, "M_NOT_FOUND"),
        ("GET", "/user/{me}/rooms/not-a-room/account_data/a.b", None, 400, "M_INVALID_PARAM"),
        ("PUT", "/user/{me}/rooms/not-a-room/account_data/a.b", {}, 400, "M_INVALID_PARAM"),
        ("GET", "/user/@bob:elsewhere/rooms/{room}/tags", None, 403, "M_FORBIDDEN"),
        ("PUT", "/user/{me}/rooms/{room}/tags/u.x", {"order": 1.5}, 400, "M_BAD_JSON"),
        ("PUT", "/user/{me}/rooms/{room}/tags/u.x", {"order": -0.1}, 400, "M_BAD_JSON"),
        ("PUT", "/user/{me}/rooms/{room}/tags/u.x", {"order": "0.5"}, 400, "M_BAD_JSON"),
        ("PUT", "/user/{me}/rooms/{room}/tags/u.x", {"order": True}, 400, "M_BAD_JSON"),
        ("PUT", "/user/{me}/rooms/{room}/tags/" + "t" * 256, {}, 400, "M_INVALID_PARAM"),
        ("PUT", "/user/{me}/rooms/bad/tags/u.x", {}, 400, "M_INVALID_PARAM"),
        ("PUT", "/user/{me}/account_data/a.b", {"s": "\ud800"}, 400, "M_BAD_JSON"),
        ("PUT", "/user/{me}/rooms/{room}/tags/u.x", {"note": "\udfff"}, 400, "M_BAD_JSON"),
        ("PUT", "/user/{me}/account_data/a.b", {"s": "x" * (1024 * 1024)}, 413, "M_TOO_LARGE"),
    ],
)
async def test_bad_account_data_requests(
    http: aiohttp.ClientSession,
    v3: str,
    token: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    errcode: str,
) -> None:
    room_id = await new_room(http, v3, token)
    url = v3 + path.replace("{me}", ME).replace("{room}", room_id)
    got = await call(http, method, url, token, body, status=status)
    assert got["errcode"] == errcode


async def test_account_data_needs_a_token_and_a_json_object(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    url = f"{v3}/user/{ME}/account_data/a.b"
    assert (await call(http, "GET", url, None, status=401))["errcode"] == "M_MISSING_TOKEN"
    for raw in (b"{not json", b'{"a":' * 50000):
        async with http.put(url, data=raw, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 400
            assert (await r.json())["errcode"] == "M_NOT_JSON"


async def test_server_managed_types_can_be_read(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    room_id = await new_room(http, v3, token)
    await node.node.account_data.put(OWNER_ID, "m.fully_read", {"event_id": "$x"}, room_id)
    got = await call(
        http, "GET", f"{v3}/user/{ME}/rooms/{room_id}/account_data/m.fully_read", token
    )
    assert got == {"event_id": "$x"}


async def test_tags_put_get_delete(http: aiohttp.ClientSession, v3: str, token: str) -> None:
    room_id = await new_room(http, v3, token)
    base = f"{v3}/user/{ME}/rooms/{room_id}/tags"
    assert await call(http, "GET", base, token) == {"tags": {}}
    await call(http, "PUT", f"{base}/m.favourite", token, {"order": 0.25})
    await call(http, "PUT", f"{base}/u.work", token, {"order": 1})
    await call(http, "PUT", f"{base}/u.later", token, {})
    assert await call(http, "GET", base, token) == {
        "tags": {"m.favourite": {"order": 0.25}, "u.work": {"order": 1}, "u.later": {}}
    }
    await call(http, "DELETE", f"{base}/u.work", token)
    await call(http, "DELETE", f"{base}/u.never", token)  # removing a missing tag is fine
    assert await call(http, "GET", base, token) == {
        "tags": {"m.favourite": {"order": 0.25}, "u.later": {}}
    }
    # The tags are the m.tag room account data.
    tag_event = await call(http, "GET", f"{v3}/user/{ME}/rooms/{room_id}/account_data/m.tag", token)
    assert tag_event == {"tags": {"m.favourite": {"order": 0.25}, "u.later": {}}}


async def test_account_data_and_tags_in_sync(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    room_id = await new_room(http, v3, token)
    await call(http, "PUT", f"{v3}/user/{ME}/account_data/org.example.a", token, {"n": 1})
    await call(http, "PUT", f"{v3}/user/{ME}/rooms/{room_id}/tags/m.favourite", token, {})
    first = await sync(http, v3, token)
    assert global_events(first)["org.example.a"] == {"n": 1}
    assert room_events(first, room_id)["m.tag"] == {"tags": {"m.favourite": {}}}

    # Nothing changed: an incremental sync carries no account data.
    quiet = await sync(http, v3, token, since=first["next_batch"])
    assert global_events(quiet) == {}
    assert room_events(quiet, room_id) == {}

    await call(http, "PUT", f"{v3}/user/{ME}/account_data/org.example.b", token, {"n": 2})
    await call(http, "PUT", f"{v3}/user/{ME}/rooms/{room_id}/tags/u.x", token, {"order": 0.5})
    second = await sync(http, v3, token, since=first["next_batch"])
    assert global_events(second) == {"org.example.b": {"n": 2}}
    assert room_events(second, room_id) == {
        "m.tag": {"tags": {"m.favourite": {}, "u.x": {"order": 0.5}}}
    }

    await call(http, "DELETE", f"{v3}/user/{ME}/rooms/{room_id}/tags/u.x", token)
    third = await sync(http, v3, token, since=second["next_batch"])
    assert room_events(third, room_id) == {"m.tag": {"tags": {"m.favourite": {}}}}
    assert global_events(third) == {}

    # A full-state sync carries everything again.
    full = await sync(http, v3, token, since=third["next_batch"], full_state="true")
    assert set(global_events(full)) >= {"org.example.a", "org.example.b"}
    assert "m.tag" in room_events(full, room_id)


async def test_sync_filters_account_data(http: aiohttp.ClientSession, v3: str, token: str) -> None:
    room_id = await new_room(http, v3, token)
    for name in ("org.example.a", "org.example.b", "com.other.c"):
        await call(http, "PUT", f"{v3}/user/{ME}/account_data/{name}", token, {})
    await call(http, "PUT", f"{v3}/user/{ME}/rooms/{room_id}/account_data/org.example.r", token, {})
    await call(http, "PUT", f"{v3}/user/{ME}/rooms/{room_id}/tags/u.t", token, {})

    only_org = '{"account_data": {"types": ["org.example.*"], "not_types": ["org.example.b"]}}'
    got = await sync(http, v3, token, filter=only_org)
    assert set(global_events(got)) == {"org.example.a"}

    newest = '{"account_data": {"limit": 1}, "room": {"account_data": {"not_types": ["m.tag"]}}}'
    got = await sync(http, v3, token, filter=newest)
    assert set(global_events(got)) == {"com.other.c"}
    assert set(room_events(got, room_id)) == {"org.example.r"}

    no_rooms = json.dumps({"room": {"account_data": {"not_rooms": [room_id]}}})
    got = await sync(http, v3, token, filter=no_rooms)
    assert room_events(got, room_id) == {}
    assert len(global_events(got)) >= 3


async def test_a_waiting_sync_wakes_for_account_data(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    first = await sync(http, v3, token)
    waiting = asyncio.create_task(sync(http, v3, token, since=first["next_batch"], timeout="10000"))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await call(http, "PUT", f"{v3}/user/{ME}/account_data/org.example.wake", token, {"up": 1})
    got = await asyncio.wait_for(waiting, 5)
    assert global_events(got) == {"org.example.wake": {"up": 1}}


async def test_account_data_survives_a_restart_and_keeps_its_stream(config: Config) -> None:
    running = await serve(config)
    try:
        v3 = f"http://{running.listeners['client']}/_matrix/client/v3"
        async with aiohttp.ClientSession() as http:
            token = await login(http, f"http://{running.listeners['client']}", "DEV1")
            await call(
                http, "PUT", f"{v3}/user/{ME}/account_data/org.example.kept", token, {"k": 1}
            )
            first = await sync(http, v3, token)
        position = running.node.notifier.current_token().get("account_data")
        assert position > 0
    finally:
        await running.stop()
    running = await serve(config)
    try:
        assert running.node.notifier.current_token().get("account_data") == position
        v3 = f"http://{running.listeners['client']}/_matrix/client/v3"
        async with aiohttp.ClientSession() as http:
            got = await call(http, "GET", f"{v3}/user/{ME}/account_data/org.example.kept", token)
            assert got == {"k": 1}
            # A change after the restart is after the old token, never behind it.
            await call(http, "PUT", f"{v3}/user/{ME}/account_data/org.example.new", token, {})
            later = await sync(http, v3, token, since=first["next_batch"])
            assert set(global_events(later)) == {"org.example.new"}
    finally:
        await running.stop()


async def test_nio_sees_account_data_and_tags(client_url: str) -> None:
    client = nio.AsyncClient(client_url, OWNER)
    try:
        await client.login(PASSWORD)
        created = await client.room_create(name="tagged")
        assert isinstance(created, nio.RoomCreateResponse), created
        headers = {"Authorization": f"Bearer {client.access_token}"}
        v3 = f"{client_url}/_matrix/client/v3"
        async with aiohttp.ClientSession(headers=headers) as http:
            tag_url = f"{v3}/user/{ME}/rooms/{created.room_id}/tags/u.nio"
            await call(http, "PUT", tag_url, None, {"order": 0.1})
            await call(http, "PUT", f"{v3}/user/{ME}/account_data/org.example.nio", None, {"a": 1})
        resp = await client.sync(timeout=0, full_state=True)
        assert isinstance(resp, nio.SyncResponse), resp
        unknown = [
            e for e in resp.account_data_events if isinstance(e, nio.UnknownAccountDataEvent)
        ]
        assert {e.type: e.content for e in unknown}["org.example.nio"] == {"a": 1}
        room = resp.rooms.join[created.room_id]
        tags = [e for e in room.account_data if isinstance(e, nio.TagEvent)]
        assert tags and tags[0].tags == {"u.nio": {"order": 0.1}}
        assert client.rooms[created.room_id].tags == {"u.nio": {"order": 0.1}}
    finally:
        await client.close()
