"""Issue #4, "what it must show" 4, between two Croft nodes: matrix-nio clients with
encryption on, one on each node, share an encrypted room and each decrypts the
other's message.

Everything a real E2EE client needs crosses the servers here: the invite and join,
``device_lists`` in /sync, /keys/query and /keys/claim answered by the other node
(POST /user/keys/query and /user/keys/claim, GET /user/devices), the room key as an
olm to-device message (``m.direct_to_device``), the megolm events as PDUs, and a
device added later (``m.device_list_update``) (spec:
server-server-api.md "Device Management", "End-to-End Encryption", "Send-to-device
messaging"; end_to_end_encryption.md "Messaging Algorithms").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.federation.nio_e2ee import (
    ENCRYPTION_ENABLED,
    E2EEUser,
    exchange_encrypted_messages,
    new_device_reads,
)
from tests.federation.nodes import PASSWORD, croft_node

pytestmark = pytest.mark.skipif(
    not ENCRYPTION_ENABLED, reason="matrix-nio[e2e] (vodozemac) is not installed"
)


async def test_nio_clients_on_two_nodes_exchange_encrypted_messages(tmp_path: Path) -> None:
    async with croft_node(tmp_path, "a") as a, croft_node(tmp_path, "b") as b:
        users: list[E2EEUser] = []
        try:
            for running, name in ((a, "laptop"), (b, "phone")):
                server = running.node.config.server_name
                users.append(
                    await E2EEUser.login(
                        f"http://{running.listeners['client']}",
                        f"@alice:{server}",
                        PASSWORD,
                        tmp_path / f"nio-{name}",
                        name,
                    )
                )
            host, guest = users
            room_id, first, second = await exchange_encrypted_messages(
                host, guest, a.node.config.server_name
            )
            sent_ids = [first.event_id, second.event_id]
            # A new device on each node receives the next room key from the other node.
            for running, sender, name in ((b, host, "tablet"), (a, guest, "desktop")):
                server = running.node.config.server_name
                newcomer = await E2EEUser.login(
                    f"http://{running.listeners['client']}",
                    f"@alice:{server}",
                    PASSWORD,
                    tmp_path / f"nio-{name}",
                    name,
                )
                users.append(newcomer)
                sent_ids.append(await new_device_reads(sender, newcomer, room_id))
            # Both servers hold ciphertext only.
            for running in (a, b):
                for event_id in sent_ids:
                    stored = await running.node.events.get_event(event_id)
                    assert stored is not None and stored.event.type == "m.room.encrypted"
                    assert "sealed" not in str(stored.event.raw)
        finally:
            for user in users:
                await user.close()
