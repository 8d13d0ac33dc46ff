"""Issue #4, "what it must show" 1: a Croft user and a Synapse user in one room, each
seeing the other's messages and state changes in /sync."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest

from tests.interop.croft_node import CroftProcess
from tests.interop.synapse import SynapseServer
from tests.interop.users import MatrixUser, has_event, invited, says, timeline


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_croft_room_with_a_synapse_user(
    synapse: SynapseServer, croft: CroftProcess, http: aiohttp.ClientSession
) -> None:
    bob_id, bob_token, _ = await synapse.register("bob", "bob password")
    alice = MatrixUser(http, croft.client_url, croft.user_id, await croft.login())
    bob = MatrixUser(http, synapse.client_url, bob_id, bob_token)

    room = await alice.create_room(name="Croft and Synapse", topic="first")
    await alice.send(room, "before the invite")
    await alice.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": bob_id})
    await bob.sync_until(invited(room))
    await bob.call("POST", f"/join/{quote(room)}?server_name={quote(croft.server_name)}", {})
    await alice.sync_until(
        lambda r: any(
            e["type"] == "m.room.member" and e["state_key"] == bob_id for e in timeline(r, room)
        )
    )

    # Messages both ways.
    sent = await alice.send(room, "hello from Croft")
    await bob.sync_until(has_event(room, sent))
    await bob.send(room, "hello from Synapse")
    await alice.sync_until(says(room, "hello from Synapse"))

    # State both ways: Croft changes the name and topic and gives Bob power; then Bob,
    # with that power, changes the topic on Synapse.
    await alice.put_state(room, "m.room.name", {"name": "Renamed by Croft"})
    await bob.wait_state(room, "m.room.name", {"name": "Renamed by Croft"})
    levels = await alice.state(room, "m.room.power_levels")
    levels["users"][bob_id] = 50
    levels.setdefault("events", {})["m.room.topic"] = 50
    await alice.put_state(room, "m.room.power_levels", levels)
    await bob.wait_state(room, "m.room.power_levels", levels)
    await bob.put_state(room, "m.room.topic", {"topic": "set on Synapse"})
    await alice.wait_state(room, "m.room.topic", {"topic": "set on Synapse"})
    await bob.send(room, "after the topic")
    await alice.sync_until(says(room, "after the topic"))
