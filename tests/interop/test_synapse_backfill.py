"""Issue #4, "what it must show" 2: a Synapse user makes rooms of versions 10, 11 and 12
with history; the Croft user joins each and pages the whole history back (/messages
reaching over federation with /backfill).

Spec: server-server-api.md "Backfilling and retrieving missing events"; client-server
message_pagination.yaml (GET /rooms/{roomId}/messages).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest

from tests.interop.croft_node import CroftProcess
from tests.interop.synapse import SynapseServer
from tests.interop.users import MatrixUser


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.parametrize("version", ["10", "11", "12"])
async def test_croft_pages_back_a_synapse_room(
    synapse: SynapseServer, croft: CroftProcess, http: aiohttp.ClientSession, version: str
) -> None:
    bob_id, bob_token, _ = await synapse.register("bob", "bob password")
    bob = MatrixUser(http, synapse.client_url, bob_id, bob_token)
    alice = MatrixUser(http, croft.client_url, croft.user_id, await croft.login())

    room = await bob.create_room(preset="public_chat", room_version=version, name="first name")
    for i in range(60):
        if i == 20:
            await bob.put_state(room, "m.room.name", {"name": "second name"})
        if i == 40:
            await bob.put_state(room, "m.room.topic", {"topic": "a topic"})
        await bob.send(room, f"message {i}")

    joined = await alice.call(
        "POST", f"/join/{quote(room)}?server_name={quote(synapse.server_name)}", {}
    )
    assert joined == {"room_id": room}

    ours = await alice.history(room, 25)
    theirs = await bob.history(room, 100)
    assert [e["event_id"] for e in ours] == [e["event_id"] for e in theirs]
    messages = [e["content"]["body"] for e in ours if e["type"] == "m.room.message"]
    assert messages == [f"message {i}" for i in reversed(range(60))]
    assert ours[-1]["type"] == "m.room.create"
    assert ours[0]["type"] == "m.room.member" and ours[0]["state_key"] == alice.user_id
    names = [e["content"]["name"] for e in ours if e["type"] == "m.room.name"]
    assert names == ["second name", "first name"]
    assert [e["content"]["topic"] for e in ours if e["type"] == "m.room.topic"] == ["a topic"]
