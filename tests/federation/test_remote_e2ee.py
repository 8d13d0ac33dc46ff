"""E2EE across two real nodes (node/federation/remote_e2ee.py, outbound_edus.py): key
queries and claims for remote users, device-list updates both ways (with resyncs),
cross-signing key updates, to-device messages, and device_lists in /sync (spec:
server-server-api.md "Device Management", "End-to-End Encryption", "Send-to-device
messaging"; end_to_end_encryption.md "Tracking the device list for a user")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.federation.edu_nodes import (
    Peer,
    attach_sender,
    cross_signing_keys,
    send_edus,
    shared_rooms,
    start_peer,
    upload_keys,
)
from tests.federation.nodes import resolver_of


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[tuple[Peer, Peer]]:
    async with AsyncExitStack() as stack:
        a = await start_peer(stack, tmp_path, "a")
        b = await start_peer(stack, tmp_path, "b")
        await attach_sender(stack, a)
        await attach_sender(stack, b)
        yield a, b


def changed(response: Any) -> list[str]:
    return list(response.get("device_lists", {}).get("changed", []))


def left(response: Any) -> list[str]:
    return list(response.get("device_lists", {}).get("left", []))


async def cached_devices(peer: Peer, user_id: str) -> dict[str, Any]:
    rows = await peer.node.db.fetchall(
        "SELECT device_id, keys_json FROM remote_devices WHERE user_id = ?", (user_id,)
    )
    return {r[0]: r[1] for r in rows}


async def test_keys_of_a_user_sharing_no_room_are_asked_for(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    uploaded = await upload_keys(b, "DEV1", otks=1)
    wanted = {b.user_id: [], "@x:127.0.0.1:1": []}
    result = await a.call("POST", "/keys/query", {"device_keys": wanted})
    assert result["device_keys"] == {b.user_id: {"DEV1": uploaded["device_keys"]}}
    assert set(result["failures"]) == {"127.0.0.1:1"}  # nothing listens there
    assert await cached_devices(a, b.user_id) == {}  # not tracked: not cached
    claim = {b.user_id: {"DEV1": "signed_curve25519"}, "@x:127.0.0.1:1": {"D": "x"}}
    claimed = await a.call("POST", "/keys/claim", {"one_time_keys": claim})
    otk = uploaded["one_time_keys"]["signed_curve25519:K0"]
    assert claimed["one_time_keys"] == {b.user_id: {"DEV1": {"signed_curve25519:K0": otk}}}
    assert set(claimed["failures"]) == {"127.0.0.1:1"}


async def test_device_list_updates(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    room_a, _ = await shared_rooms(a, b)
    since = (await a.sync())["next_batch"]
    # B's owner sets up a device: B tells A, which fetches B's list (GET /user/devices).
    uploaded = await upload_keys(b, "DEV1")
    response = await a.sync_until(since, lambda r: b.user_id in changed(r))
    since = response["next_batch"]
    await a.node.remote_e2ee.wait_idle()
    assert set(await cached_devices(a, b.user_id)) == {"DEV1"}
    # A's client asks for the keys: answered from the cache, B is not asked.
    calls = resolver_of(a.running).calls[b.server_name]
    result = await a.call("POST", "/keys/query", {"device_keys": {b.user_id: []}})
    assert result["device_keys"] == {b.user_id: {"DEV1": uploaded["device_keys"]}}
    assert resolver_of(a.running).calls[b.server_name] == calls

    # A new device: one update whose prev_id A knows, applied without a fetch.
    token2 = await b.login("DEV2")
    second = await upload_keys(b, "DEV2", token=token2)
    response = await a.sync_until(since, lambda r: b.user_id in changed(r))
    since = response["next_batch"]
    assert set(await cached_devices(a, b.user_id)) == {"DEV1", "DEV2"}
    assert resolver_of(a.running).calls[b.server_name] == calls
    result = await a.call("POST", "/keys/query", {"device_keys": {b.user_id: ["DEV2"]}})
    assert result["device_keys"] == {b.user_id: {"DEV2": second["device_keys"]}}
    # The device is deleted: so is A's copy.
    await b.call("POST", "/logout", {}, token=token2)
    response = await a.sync_until(since, lambda r: b.user_id in changed(r))
    since = response["next_batch"]
    assert set(await cached_devices(a, b.user_id)) == {"DEV1"}

    # Cross-signing keys: an m.signing_key_update (and the devices again).
    cross = cross_signing_keys(b.user_id)
    await b.call("POST", "/keys/device_signing/upload", cross)
    response = await a.sync_until(since, lambda r: b.user_id in changed(r))
    since = response["next_batch"]
    result = await a.call("POST", "/keys/query", {"device_keys": {b.user_id: []}})
    assert result["master_keys"] == {b.user_id: cross["master_key"]}
    assert result["self_signing_keys"] == {b.user_id: cross["self_signing_key"]}

    # An update that follows one A never saw: A fetches the whole list again.
    stored = await a.node.db.fetchone(
        "SELECT stream_id FROM remote_device_lists WHERE user_id = ?", (b.user_id,)
    )
    await a.node.db.write_sync(
        lambda conn: conn.execute("DELETE FROM remote_devices WHERE user_id = ?", (b.user_id,))
    )
    gap = {
        "user_id": b.user_id,
        "device_id": "DEV9",
        "stream_id": stored[0] + 10,
        "prev_id": [stored[0] + 9],
        "deleted": True,
    }
    await send_edus(b, a, {"edu_type": "m.device_list_update", "content": gap})
    await a.node.remote_e2ee.wait_idle()
    assert set(await cached_devices(a, b.user_id)) == {"DEV1"}  # refetched from B
    assert resolver_of(a.running).calls[b.server_name] > calls

    # B's owner leaves the shared room (on A): A's client is told in device_lists.left.
    await a.node.rooms.send(
        b.user_id, room_a, "m.room.member", {"membership": "leave"}, state_key=b.user_id
    )
    response = await a.sync_until(since, lambda r: b.user_id in left(r))
    assert b.user_id not in changed(response)
    changes = await a.call("GET", "/keys/changes", **{"from": since, "to": response["next_batch"]})
    assert b.user_id in changes["left"]


async def test_device_list_updates_of_users_sharing_no_room_are_ignored(
    peers: tuple[Peer, Peer],
) -> None:
    a, b = peers
    update = {"user_id": b.user_id, "device_id": "D", "stream_id": 5, "prev_id": []}
    await send_edus(b, a, {"edu_type": "m.device_list_update", "content": update})
    await a.node.remote_e2ee.wait_idle()
    row = await a.node.db.fetchone("SELECT 1 FROM remote_device_lists")
    assert row is None


async def test_to_device_messages_across_servers(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    token_b2 = await b.login("DEVB2")
    since = (await b.sync(token=token_b2))["next_batch"]
    body = {"messages": {b.user_id: {"DEVB2": {"ciphertext": "hello"}}}}
    await a.call("PUT", "/sendToDevice/m.room.encrypted/t1", body)
    response = await b.sync_until(since, lambda r: r.get("to_device"), token=token_b2)
    events = response["to_device"]["events"]
    assert events == [
        {"sender": a.user_id, "type": "m.room.encrypted", "content": {"ciphertext": "hello"}}
    ]
    assert await a.node.db.fetchone("SELECT 1 FROM to_device_outbox") is None
    # A retransmitted EDU (same message_id) is delivered once; "*" reaches every device.
    edu = {
        "edu_type": "m.direct_to_device",
        "content": {
            "sender": a.user_id,
            "type": "m.test",
            "message_id": "m1",
            "messages": {b.user_id: {"*": {"n": 1}}},
        },
    }
    since = response["next_batch"]
    await send_edus(a, b, edu)
    await send_edus(a, b, edu)
    response = await b.sync_until(since, lambda r: r.get("to_device"), token=token_b2)
    assert [e["content"] for e in response["to_device"]["events"]] == [{"n": 1}]
    dev1 = await b.node.db.fetchall(
        "SELECT message_json FROM to_device_inbox WHERE device_id = 'DEV1'"
        " AND message_json LIKE '%m.test%'"
    )
    assert len(dev1) == 1
    # Another server may not speak for A's users.
    forged = {**edu["content"], "sender": "@mallory:127.0.0.1:1", "message_id": "m2"}
    await send_edus(a, b, {"edu_type": "m.direct_to_device", "content": forged})
    rows = await b.node.db.fetchall("SELECT message_json FROM to_device_inbox")
    assert not any("mallory" in r[0] for r in rows)
