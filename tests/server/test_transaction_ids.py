"""unsigned.transaction_id: the sending device sees its txnId on its own events.

Spec: client-server "Transaction identifiers" (and "Local echo"): the transaction ID
is in ``unsigned`` of the event as served to the device that sent it, and only there.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import nio

from tests.conftest import OWNER, PASSWORD
from tests.server.test_client_basics import login

V3 = "/_matrix/client/v3"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get_json(http: aiohttp.ClientSession, url: str, token: str) -> dict[str, Any]:
    async with http.get(url, headers=auth(token)) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def timeline_event(body: dict[str, Any], room_id: str, event_id: str) -> dict[str, Any]:
    events = body["rooms"]["join"][room_id]["timeline"]["events"]
    return next(e for e in events if e["event_id"] == event_id)


async def test_nio_sees_its_transaction_id_and_another_device_does_not(
    client_url: str, http: aiohttp.ClientSession
) -> None:
    client = nio.AsyncClient(client_url, OWNER)
    try:
        assert isinstance(await client.login(PASSWORD, device_name="nio"), nio.LoginResponse)
        created = await client.room_create(name="txn")
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        first = await client.sync(timeout=0)
        assert isinstance(first, nio.SyncResponse), first
        sent = await client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"}
        )
        assert isinstance(sent, nio.RoomSendResponse), sent
        # nio makes up a UUID transaction ID; the local echo is matched on it.
        incremental = await client.sync(timeout=0, since=first.next_batch)
        assert isinstance(incremental, nio.SyncResponse), incremental
        events = incremental.rooms.join[room_id].timeline.events
        echo = next(e for e in events if e.event_id == sent.event_id)
        assert echo.transaction_id is not None
        nio_txn = echo.transaction_id

        # The same device, other endpoints, raw JSON.
        token = client.access_token
        initial = await get_json(http, f"{client_url}{V3}/sync", token)
        assert timeline_event(initial, room_id, sent.event_id)["unsigned"]["transaction_id"] == (
            nio_txn
        )
        msgs = await get_json(http, f"{client_url}{V3}/rooms/{room_id}/messages?dir=b", token)
        mine = next(e for e in msgs["chunk"] if e["event_id"] == sent.event_id)
        assert mine["unsigned"]["transaction_id"] == nio_txn
        # Events this device did not send through /send carry none.
        assert all("transaction_id" not in e["unsigned"] for e in msgs["chunk"] if e is not mine)
        single = await get_json(
            http, f"{client_url}{V3}/rooms/{room_id}/event/{sent.event_id}", token
        )
        assert single["unsigned"]["transaction_id"] == nio_txn

        # Another device of the same user: no transaction ID anywhere.
        other = (await login(http, client_url))["access_token"]
        body = await get_json(http, f"{client_url}{V3}/sync", other)
        assert "transaction_id" not in timeline_event(body, room_id, sent.event_id)["unsigned"]
        msgs = await get_json(http, f"{client_url}{V3}/rooms/{room_id}/messages?dir=b", other)
        assert all("transaction_id" not in e["unsigned"] for e in msgs["chunk"])
        single = await get_json(
            http, f"{client_url}{V3}/rooms/{room_id}/event/{sent.event_id}", other
        )
        assert "transaction_id" not in single["unsigned"]
    finally:
        await client.close()


async def test_raw_send_txn_id_in_sync_for_the_sender_only(
    client_url: str, http: aiohttp.ClientSession
) -> None:
    a = (await login(http, client_url))["access_token"]
    b = (await login(http, client_url))["access_token"]
    async with http.post(f"{client_url}{V3}/createRoom", json={}, headers=auth(a)) as r:
        room_id = (await r.json())["room_id"]
    since = (await get_json(http, f"{client_url}{V3}/sync", a))["next_batch"]
    ids = []
    for i in range(3):
        async with http.put(
            f"{client_url}{V3}/rooms/{room_id}/send/m.room.message/txn-{i}",
            json={"msgtype": "m.text", "body": str(i)},
            headers=auth(a),
        ) as r:
            assert r.status == 200, await r.text()
            ids.append((await r.json())["event_id"])
    body = await get_json(http, f"{client_url}{V3}/sync?since={since}", a)
    for i, event_id in enumerate(ids):
        assert timeline_event(body, room_id, event_id)["unsigned"]["transaction_id"] == f"txn-{i}"
    # A retry with the same txnId returns the same event; the ID is still the client's.
    async with http.put(
        f"{client_url}{V3}/rooms/{room_id}/send/m.room.message/txn-0",
        json={"msgtype": "m.text", "body": "0"},
        headers=auth(a),
    ) as r:
        assert (await r.json())["event_id"] == ids[0]
    body = await get_json(http, f"{client_url}{V3}/sync", b)
    for event_id in ids:
        assert "transaction_id" not in timeline_event(body, room_id, event_id)["unsigned"]
    # With an event_fields filter that keeps unsigned, it is still there.
    flt = '{"event_fields":["event_id","unsigned"]}'
    body = await get_json(http, f"{client_url}{V3}/sync?filter={flt}", a)
    assert timeline_event(body, room_id, ids[2])["unsigned"]["transaction_id"] == "txn-2"
