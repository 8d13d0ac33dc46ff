"""Issue #4, "what it must show" 4: end-to-end encryption across servers. matrix-nio
clients with encryption on, one on Croft and one on Synapse, share an encrypted room
and each decrypts the other's message.

Each server answers its own users' keys to the other (POST /user/keys/query and
/user/keys/claim, GET /user/devices), tells it of device changes
(``m.device_list_update``) and carries the room keys as olm to-device messages
(``m.direct_to_device``); the messages themselves are megolm-encrypted PDUs (spec:
server-server-api.md "Device Management", "End-to-End Encryption", "Send-to-device
messaging"). Both directions are tried: a Croft room with a Synapse guest, and a
Synapse room with a Croft guest; in each, a device added later on one server receives
the next room key from the other.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from tests.federation.nio_e2ee import (
    ENCRYPTION_ENABLED,
    E2EEUser,
    exchange_encrypted_messages,
    new_device_reads,
)
from tests.interop.croft_node import CroftProcess
from tests.interop.synapse import SynapseServer

pytestmark = pytest.mark.skipif(
    not ENCRYPTION_ENABLED, reason="matrix-nio[e2e] (vodozemac) is not installed"
)

BOB_PASSWORD = "bob password"


async def clients(
    croft: CroftProcess, synapse: SynapseServer, tmp_path: Path
) -> tuple[E2EEUser, E2EEUser]:
    bob_id, _, _ = await synapse.register("bob", BOB_PASSWORD)
    alice = await E2EEUser.login(
        croft.client_url, croft.user_id, croft.password, tmp_path / "nio-alice", "croft laptop"
    )
    bob = await E2EEUser.login(
        synapse.client_url, bob_id, BOB_PASSWORD, tmp_path / "nio-bob", "synapse phone"
    )
    return alice, bob


async def assert_ciphertext_only(
    croft: CroftProcess, synapse: SynapseServer, alice: E2EEUser, bob: E2EEUser, room_id: str
) -> None:
    """Neither server has the plaintext: both serve the messages as m.room.encrypted."""
    for server, user in ((croft, alice), (synapse, bob)):
        status, page = await server.request(
            "GET",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=20",
            token=user.client.access_token,
        )
        assert status == 200, page
        types = [e["type"] for e in page["chunk"]]
        assert "m.room.message" not in types and types.count("m.room.encrypted") == 3, types
        assert "sealed" not in str(page)


async def test_croft_room_with_a_synapse_guest(
    synapse: SynapseServer, croft: CroftProcess, tmp_path: Path
) -> None:
    alice, bob = await clients(croft, synapse, tmp_path)
    tablet: E2EEUser | None = None
    try:
        room_id, _, _ = await exchange_encrypted_messages(alice, bob, croft.server_name)
        # Bob adds a device on Synapse: Croft learns of it (m.device_list_update in).
        tablet = await E2EEUser.login(
            synapse.client_url, bob.user_id, BOB_PASSWORD, tmp_path / "nio-tablet", "tablet"
        )
        await new_device_reads(alice, tablet, room_id)
        await assert_ciphertext_only(croft, synapse, alice, bob, room_id)
    finally:
        for user in (alice, bob, tablet):
            if user is not None:
                await user.close()


async def test_synapse_room_with_a_croft_guest(
    synapse: SynapseServer, croft: CroftProcess, tmp_path: Path
) -> None:
    alice, bob = await clients(croft, synapse, tmp_path)
    phone: E2EEUser | None = None
    try:
        room_id, _, _ = await exchange_encrypted_messages(bob, alice, synapse.server_name)
        # Alice adds a device on Croft: Synapse learns of it (m.device_list_update out).
        phone = await E2EEUser.login(
            croft.client_url, croft.user_id, croft.password, tmp_path / "nio-phone", "phone"
        )
        await new_device_reads(bob, phone, room_id)
        await assert_ciphertext_only(croft, synapse, alice, bob, room_id)
    finally:
        for user in (alice, bob, phone):
            if user is not None:
                await user.close()
