"""matrix-nio clients with encryption on (vodozemac) for the E2EE-across-servers tests:
Croft to Synapse (tests/interop/test_e2ee_federation.py) and Croft to Croft
(tests/federation/test_e2ee_two_nodes.py).

Each client logs in with a password (a new device), keeps its olm store in a directory
of its own, and settles after each sync as a real client does: uploads its keys when
nio asks, and queries the keys of the users nio tracks (the device lists of users on
other servers come from their server, over federation). Devices of others are used
without interactive verification (``ignore_unverified_devices``), as in
tests/e2ee/test_nio_e2ee.py. A megolm event that arrived before its room key (the
key travels as a to-device message, the event as a PDU: two paths) is decrypted again
after later syncs, as clients retry.

Every wait is bounded (``within`` seconds of /sync long-polls).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nio
from nio.crypto import ENCRYPTION_ENABLED

WITHIN_S = 60.0  # longest wait for anything to cross the servers
POLL_MS = 1000  # /sync long-poll

__all__ = [
    "ENCRYPTION_ENABLED",
    "WITHIN_S",
    "E2EEUser",
    "exchange_encrypted_messages",
    "new_device_reads",
]


class E2EEUser:
    """One logged-in device with encryption, and what it has decrypted so far."""

    def __init__(self, client: nio.AsyncClient) -> None:
        self.client = client
        self.decrypted: list[nio.RoomMessageText] = []  # in the order they were decrypted
        self.undecrypted: list[tuple[str, nio.MegolmEvent]] = []  # room ID, event

    @classmethod
    async def login(
        cls, url: str, user_id: str, password: str, store: Path, device_name: str
    ) -> E2EEUser:
        await asyncio.to_thread(store.mkdir, parents=True, exist_ok=True)
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        client = nio.AsyncClient(url, user_id, store_path=str(store), config=config)
        login = await client.login(password, device_name=device_name)
        assert isinstance(login, nio.LoginResponse), login
        assert client.olm is not None
        return cls(client)

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    @property
    def device_id(self) -> str:
        return str(self.client.device_id)

    async def close(self) -> None:
        await self.client.close()

    async def settle(self, timeout_ms: int = 0) -> nio.SyncResponse:
        """One sync, then the key traffic nio asks for, then another try at the
        events still waiting for their room key."""
        client = self.client
        response = await client.sync(timeout=timeout_ms, full_state=client.next_batch is None)
        assert isinstance(response, nio.SyncResponse), response
        if client.should_upload_keys:
            uploaded = await client.keys_upload()
            assert isinstance(uploaded, nio.KeysUploadResponse), uploaded
        if client.should_query_keys:
            queried = await client.keys_query()
            assert isinstance(queried, nio.KeysQueryResponse), queried
        for room_id, joined in response.rooms.join.items():
            for event in joined.timeline.events:
                self._keep(room_id, event)
        self._retry_decryption()
        return response

    def _keep(self, room_id: str, event: nio.Event) -> None:
        if isinstance(event, nio.RoomMessageText) and event.decrypted:
            self.decrypted.append(event)
        elif isinstance(event, nio.MegolmEvent):
            self.undecrypted.append((room_id, event))

    def _retry_decryption(self) -> None:
        waiting, self.undecrypted = self.undecrypted, []
        for room_id, event in waiting:
            assert self.client.olm is not None
            try:
                decrypted = self.client.olm.decrypt_megolm_event(event, room_id)
            except nio.EncryptionError:
                self.undecrypted.append((room_id, event))
                continue
            self._keep(room_id, decrypted)

    async def until(self, found: Callable[[], Any], what: str, within: float = WITHIN_S) -> Any:
        """Settle (long-polling) until ``found()`` is truthy; returns its value."""
        deadline = time.monotonic() + within
        while True:
            value = found()
            if value:
                return value
            if time.monotonic() > deadline:
                waiting = [e.event_id for _, e in self.undecrypted]
                raise AssertionError(
                    f"{self.user_id} ({self.device_id}): {what} not within {within:.0f} s"
                    f" (events still undecrypted: {waiting})"
                )
            await self.settle(POLL_MS)

    def knows_device(self, user_id: str, device_id: str) -> bool:
        return device_id in {d.id for d in self.client.device_store.active_user_devices(user_id)}


def _joined(user: E2EEUser, room_id: str, member: str) -> bool:
    room = user.client.rooms.get(room_id)
    return room is not None and member in room.users and member not in room.invited_users


async def exchange_encrypted_messages(
    host: E2EEUser, guest: E2EEUser, host_server: str
) -> tuple[str, nio.RoomSendResponse, nio.RoomSendResponse]:
    """The flow both tests run. ``host`` (on ``host_server``) creates an encrypted room
    and invites ``guest`` (on another server), who joins; each learns the other's
    device over federation, sends an encrypted message, and decrypts the other's.
    Returns the room ID and the two sends."""
    for user in (host, guest):
        await user.settle()
    created = await host.client.room_create(
        name="secret across servers", initial_state=[nio.EnableEncryptionBuilder().as_dict()]
    )
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id
    # (Croft's createRoom refuses ``invite`` for now: the invite is its own request.)
    invited = await host.client.room_invite(room_id, guest.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited

    await guest.until(lambda: room_id in guest.client.invited_rooms, "the invite")
    joined = await guest.client.join(room_id)
    assert isinstance(joined, nio.JoinResponse), joined
    await guest.until(
        lambda: room_id in guest.client.rooms and guest.client.rooms[room_id].encrypted,
        "the encrypted room after the join",
    )
    await host.until(lambda: _joined(host, room_id, guest.user_id), "the guest's join")

    # Each side learns the other's device through its own server (/keys/query, which
    # asks the other server: /user/devices or /user/keys/query over federation).
    await host.until(lambda: host.knows_device(guest.user_id, guest.device_id), "guest device")
    await guest.until(lambda: guest.knows_device(host.user_id, host.device_id), "host device")

    # Host to guest: /keys/claim (a one-time key of the guest's device, claimed over
    # federation), the room key as an olm to-device message (m.direct_to_device), then
    # the megolm-encrypted event (a PDU).
    first = await host.client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": f"sealed on {host_server}"},
        ignore_unverified_devices=True,
    )
    assert isinstance(first, nio.RoomSendResponse), first
    got = await guest.until(
        lambda: [e for e in guest.decrypted if e.event_id == first.event_id], "the host's message"
    )
    assert got[0].body == f"sealed on {host_server}" and got[0].decrypted

    # And back, the guest's own session, to the host's device.
    second = await guest.client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": "sealed in reply"},
        ignore_unverified_devices=True,
    )
    assert isinstance(second, nio.RoomSendResponse), second
    back = await host.until(
        lambda: [e for e in host.decrypted if e.event_id == second.event_id], "the guest's reply"
    )
    assert back[0].body == "sealed in reply" and back[0].decrypted
    return room_id, first, second


async def new_device_reads(sender: E2EEUser, newcomer: E2EEUser, room_id: str) -> str:
    """``newcomer``, a new device of a user already in the room (on another server than
    ``sender``), uploads its keys; its server tells ``sender``'s
    (``m.device_list_update``), ``sender`` sees the user in ``device_lists.changed``,
    queries the new device, shares a new room key with it (a one-time key claimed over
    federation, an olm to-device message) and sends; the new device decrypts.
    Returns the event ID."""
    await newcomer.until(lambda: room_id in newcomer.client.rooms, "the room on the new device")
    await sender.until(
        lambda: sender.knows_device(newcomer.user_id, newcomer.device_id), "the new device"
    )
    # nio shares a room key with the devices it knew when the key was made; a new
    # device gets the next key, shared now (as other clients do on a device change).
    shared = await sender.client.share_group_session(room_id, ignore_unverified_devices=True)
    assert isinstance(shared, nio.ShareGroupSessionResponse), shared
    assert (newcomer.user_id, newcomer.device_id) in shared.users_shared_with, shared
    sent = await sender.client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": "sealed for the new device"},
        ignore_unverified_devices=True,
    )
    assert isinstance(sent, nio.RoomSendResponse), sent
    got = await newcomer.until(
        lambda: [e for e in newcomer.decrypted if e.event_id == sent.event_id],
        "the message for the new device",
    )
    assert got[0].body == "sealed for the new device" and got[0].decrypted
    return str(sent.event_id)
