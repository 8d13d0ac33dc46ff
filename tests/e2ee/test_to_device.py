"""PUT /sendToDevice and the to_device section of /sync on a real node."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from node.app import RunningNode, serve
from node.config import Config
from tests.e2ee.conftest import OWNER_ID, Device, call, ed25519_key, login


async def sync(
    http: aiohttp.ClientSession, v3: str, dev: Device, since: str | None = None
) -> dict[str, Any]:
    params = {"timeout": "0"} | ({"since": since} if since else {})
    return await call(http, "GET", f"{v3}/sync", dev.token, **params)  # type: ignore[no-any-return]


async def send(
    http: aiohttp.ClientSession,
    v3: str,
    dev: Device,
    txn: str,
    messages: Any,
    event_type: str = "m.test",
    status: int = 200,
) -> Any:
    return await call(
        http,
        "PUT",
        f"{v3}/sendToDevice/{event_type}/{txn}",
        dev.token,
        {"messages": messages},
        status=status,
    )


def events(response: dict[str, Any]) -> list[dict[str, Any]]:
    return response.get("to_device", {}).get("events", [])  # type: ignore[no-any-return]


async def test_delivered_in_order_then_deleted_once_acknowledged(
    http: aiohttp.ClientSession, v3: str, dev1: Device, dev2: Device, node: RunningNode
) -> None:
    first = await sync(http, v3, dev2)
    assert events(first) == []
    assert await send(http, v3, dev1, "t1", {OWNER_ID: {"DEV2": {"n": 1}}}) == {}
    await send(http, v3, dev1, "t2", {OWNER_ID: {"DEV2": {"n": 2}}})
    got = await sync(http, v3, dev2, first["next_batch"])
    assert events(got) == [
        {"sender": OWNER_ID, "type": "m.test", "content": {"n": 1}},
        {"sender": OWNER_ID, "type": "m.test", "content": {"n": 2}},
    ]
    # Not yet acknowledged: syncing again from the same token repeats them.
    again = await sync(http, v3, dev2, first["next_batch"])
    assert events(again) == events(got)
    # Syncing from the new token acknowledges them: gone.
    later = await sync(http, v3, dev2, got["next_batch"])
    assert events(later) == []
    assert await node.node.db.fetchone("SELECT 1 FROM to_device_inbox") is None
    # An initial sync of a device with nothing queued has no to_device section.
    assert "to_device" not in await sync(http, v3, dev1)


async def test_transaction_ids_make_sends_idempotent(
    http: aiohttp.ClientSession, v3: str, dev1: Device, dev2: Device
) -> None:
    start = (await sync(http, v3, dev2))["next_batch"]
    for _ in range(3):
        await send(http, v3, dev1, "same", {OWNER_ID: {"DEV2": {"n": 1}}})
    # The same txn ID on another path (event type) is another request.
    await send(http, v3, dev1, "same", {OWNER_ID: {"DEV2": {"n": 2}}}, event_type="m.other")
    # ... and from another device too.
    await send(http, v3, dev2, "same", {OWNER_ID: {"DEV2": {"n": 3}}})
    got = events(await sync(http, v3, dev2, start))
    assert [(e["type"], e["content"]["n"]) for e in got] == [
        ("m.test", 1),
        ("m.other", 2),
        ("m.test", 3),
    ]


async def test_wildcard_reaches_every_device_and_named_wins(
    http: aiohttp.ClientSession, v3: str, dev1: Device, dev2: Device
) -> None:
    t1 = (await sync(http, v3, dev1))["next_batch"]
    t2 = (await sync(http, v3, dev2))["next_batch"]
    await send(
        http,
        v3,
        dev1,
        "w",
        {OWNER_ID: {"*": {"to": "all"}, "DEV2": {"to": "dev2"}, "GONE": {"to": "nobody"}}},
    )
    assert [e["content"] for e in events(await sync(http, v3, dev1, t1))] == [{"to": "all"}]
    assert [e["content"] for e in events(await sync(http, v3, dev2, t2))] == [{"to": "dev2"}]


async def test_at_most_100_per_sync(
    http: aiohttp.ClientSession, v3: str, dev1: Device, dev2: Device
) -> None:
    token = (await sync(http, v3, dev2))["next_batch"]
    for i in range(130):
        await send(http, v3, dev1, f"m{i}", {OWNER_ID: {"DEV2": {"n": i}}})
    first = await sync(http, v3, dev2, token)
    assert [e["content"]["n"] for e in events(first)] == list(range(100))
    second = await sync(http, v3, dev2, first["next_batch"])
    assert [e["content"]["n"] for e in events(second)] == list(range(100, 130))
    assert events(await sync(http, v3, dev2, second["next_batch"])) == []


async def test_long_poll_wakes_for_a_message(
    http: aiohttp.ClientSession, v3: str, dev1: Device, dev2: Device
) -> None:
    import asyncio

    token = (await sync(http, v3, dev2))["next_batch"]
    waiting = asyncio.create_task(
        call(http, "GET", f"{v3}/sync", dev2.token, since=token, timeout="10000")
    )
    await asyncio.sleep(0.2)
    await send(http, v3, dev1, "wake", {OWNER_ID: {"DEV2": {"n": 1}}})
    got = await asyncio.wait_for(waiting, 5)
    assert [e["content"] for e in events(got)] == [{"n": 1}]


async def test_remote_users_are_queued_for_federation(
    http: aiohttp.ClientSession, v3: str, dev1: Device, node: RunningNode
) -> None:
    await send(http, v3, dev1, "r", {"@bob:elsewhere.example": {"BOB": {"k": 1}}})
    # Handed on to the federation sender's durable queue (node/federation/outbound_edus.py;
    # tests reach no other server, so it stays there).
    assert await node.node.e2ee.to_device.outbox("elsewhere.example") == []
    rows = await node.node.db.fetchall(
        "SELECT content FROM federation_outbox_edus WHERE destination = 'elsewhere.example'"
        " AND edu_type = 'm.direct_to_device'"
    )
    assert len(rows) == 1
    edu = json.loads(rows[0][0])
    assert edu["sender"] == OWNER_ID and edu["type"] == "m.test"
    assert edu["messages"] == {"@bob:elsewhere.example": {"BOB": {"k": 1}}}
    assert edu["message_id"]


async def test_logout_drops_the_device_queue(
    http: aiohttp.ClientSession, v3: str, dev1: Device, dev2: Device, node: RunningNode
) -> None:
    await send(http, v3, dev1, "x", {OWNER_ID: {"DEV2": {"n": 1}}})
    await call(http, "POST", f"{v3}/logout", dev2.token, {})
    assert await node.node.db.fetchone("SELECT 1 FROM to_device_inbox") is None


@pytest.mark.parametrize(
    ("body", "status", "errcode"),
    [
        ({}, 400, "M_MISSING_PARAM"),
        ({"messages": []}, 400, "M_BAD_JSON"),
        ({"messages": {OWNER_ID: {"DEV2": "text"}}}, 400, "M_BAD_JSON"),
        ({"messages": {OWNER_ID: []}}, 400, "M_BAD_JSON"),
        ({"messages": {"not-a-user": {}}}, 400, "M_INVALID_PARAM"),
    ],
)
async def test_bad_sends(
    http: aiohttp.ClientSession, v3: str, dev1: Device, body: Any, status: int, errcode: str
) -> None:
    got = await call(http, "PUT", f"{v3}/sendToDevice/m.test/bad", dev1.token, body, status=status)
    assert got["errcode"] == errcode


async def test_queue_and_positions_survive_a_restart(config: Config) -> None:
    async def started() -> tuple[RunningNode, aiohttp.ClientSession, str]:
        running = await serve(config)
        return running, aiohttp.ClientSession(), f"http://{running.listeners['client']}"

    running, http, url = await started()
    try:
        v3 = f"{url}/_matrix/client/v3"
        dev1 = Device("DEV1", await login(http, url, "DEV1"), ed25519_key("DEV1"))
        dev2 = Device("DEV2", await login(http, url, "DEV2"), ed25519_key("DEV2"))
        token = (await sync(http, v3, dev2))["next_batch"]
        await send(http, v3, dev1, "t", {OWNER_ID: {"DEV2": {"n": 1}}})
        await call(
            http, "POST", f"{v3}/keys/upload", dev1.token, {"device_keys": dev1.device_keys()}
        )
    finally:
        await http.close()
        await running.stop()
    running, http, url = await started()
    try:
        v3 = f"{url}/_matrix/client/v3"
        position = running.node.notifier.current_token()
        assert position.get("to_device") >= 1 and position.get("device_lists") >= 1
        got = await sync(http, v3, dev2, token)
        assert [e["content"] for e in events(got)] == [{"n": 1}]
        assert got["device_lists"]["changed"] == [OWNER_ID]
    finally:
        await http.close()
        await running.stop()
