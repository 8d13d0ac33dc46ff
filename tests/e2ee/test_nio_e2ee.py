"""End to end: two matrix-nio clients with encryption (vodozemac), two devices of the
owner, exchange a message in an encrypted room, and it decrypts.

This exercises every server part a real E2EE client needs: /keys/upload, /keys/query,
/keys/claim, /sendToDevice, and /sync with to_device, device_lists and one-time key
counts.
"""

from __future__ import annotations

from pathlib import Path

import nio
import pytest
from nio.crypto import ENCRYPTION_ENABLED

from node.app import RunningNode
from tests.conftest import OWNER, PASSWORD

pytestmark = pytest.mark.skipif(
    not ENCRYPTION_ENABLED, reason="matrix-nio[e2e] (vodozemac) is not installed"
)


async def e2ee_client(url: str, store: Path, device_name: str) -> nio.AsyncClient:
    """A logged-in nio client with encryption; ``store`` must exist (nio's olm store)."""
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    client = nio.AsyncClient(url, OWNER, store_path=str(store), config=config)
    login = await client.login(PASSWORD, device_name=device_name)
    assert isinstance(login, nio.LoginResponse), login
    assert client.olm is not None
    return client


async def settle(client: nio.AsyncClient) -> nio.SyncResponse:
    """One sync, then whatever key traffic the client says it needs."""
    response = await client.sync(timeout=0, full_state=client.next_batch is None)
    assert isinstance(response, nio.SyncResponse), response
    if client.should_upload_keys:
        assert isinstance(await client.keys_upload(), nio.KeysUploadResponse)
    if client.should_query_keys:
        assert isinstance(await client.keys_query(), nio.KeysQueryResponse)
    return response


async def test_two_devices_exchange_an_encrypted_message(
    client_url: str, node: RunningNode, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    alice = await e2ee_client(client_url, tmp_path / "a", "laptop")
    phone = await e2ee_client(client_url, tmp_path / "b", "phone")
    try:
        assert alice.device_id != phone.device_id
        for client in (alice, phone):
            await settle(client)
        created = await alice.room_create(
            name="secret",
            initial_state=[nio.EnableEncryptionBuilder().as_dict()],
        )
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        for _ in range(2):
            for client in (alice, phone):
                await settle(client)
        assert alice.rooms[room_id].encrypted and phone.rooms[room_id].encrypted
        # Each side knows the other device's keys (from /keys/query after device_lists).
        assert phone.device_id in {
            d.id for d in alice.device_store.active_user_devices(alice.user_id)
        }
        assert alice.device_id in {
            d.id for d in phone.device_store.active_user_devices(phone.user_id)
        }

        sent = await alice.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": "the eagle lands at noon"},
            ignore_unverified_devices=True,
        )
        assert isinstance(sent, nio.RoomSendResponse), sent

        received: list[nio.Event] = []
        for _ in range(3):
            response = await settle(phone)
            joined = response.rooms.join.get(room_id)
            if joined is not None:
                received += joined.timeline.events
            if any(isinstance(e, nio.RoomMessageText) for e in received):
                break
        texts = [e for e in received if isinstance(e, nio.RoomMessageText)]
        assert [t.body for t in texts] == ["the eagle lands at noon"], received
        assert texts[0].decrypted and texts[0].event_id == sent.event_id
        # The server stored only ciphertext.
        stored = await node.node.events.get_event(sent.event_id)
        assert stored is not None and stored.event.type == "m.room.encrypted"
        assert "the eagle" not in str(stored.event.raw)

        # And back: the phone answers, the laptop decrypts.
        reply = await phone.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": "copy that"},
            ignore_unverified_devices=True,
        )
        assert isinstance(reply, nio.RoomSendResponse), reply
        got: list[nio.Event] = []
        for _ in range(3):
            response = await settle(alice)
            joined = response.rooms.join.get(room_id)
            if joined is not None:
                got += joined.timeline.events
            if any(isinstance(e, nio.RoomMessageText) and e.body == "copy that" for e in got):
                break
        # The laptop's own message comes back too (it had not synced since sending it).
        bodies = [e.body for e in got if isinstance(e, nio.RoomMessageText)]
        assert bodies == ["the eagle lands at noon", "copy that"], got
    finally:
        await alice.close()
        await phone.close()
