"""Looking things up across servers with a real Synapse: room aliases (joining by
alias both ways), profiles, public room directories, and knocking both ways.

Spec: server-server-api.md "Querying for information" (query/directory,
query/profile), "Public Room Directory", "Knocking upon a room"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.interop.croft_node import CroftProcess
from tests.interop.synapse import SynapseServer
from tests.interop.users import MatrixUser, invited, timeline


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def synapse(synapse_factory: Any) -> SynapseServer:
    """Synapse answers directory queries from other servers, and lets users publish
    rooms in its directory, only when told to (both are off by default)."""
    config = {
        "allow_public_rooms_over_federation": True,
        "room_list_publication_rules": [{"action": "allow"}],
    }
    return await synapse_factory("synapse", extra_config=config)  # type: ignore[no-any-return]


@pytest.fixture
async def pair(
    synapse: SynapseServer, croft: CroftProcess, http: aiohttp.ClientSession
) -> tuple[MatrixUser, MatrixUser]:
    bob_id, bob_token, _ = await synapse.register("bob", "bob password")
    alice = MatrixUser(http, croft.client_url, croft.user_id, await croft.login())
    bob = MatrixUser(http, synapse.client_url, bob_id, bob_token)
    return alice, bob


def member_is(room: str, user_id: str, membership: str):  # type: ignore[no-untyped-def]
    return lambda r: any(
        e["type"] == "m.room.member"
        and e["state_key"] == user_id
        and e["content"].get("membership") == membership
        for e in timeline(r, room)
    )


async def test_join_by_alias_both_ways_and_profiles(
    pair: tuple[MatrixUser, MatrixUser], synapse: SynapseServer, croft: CroftProcess
) -> None:
    alice, bob = pair
    await bob.call("PUT", f"/profile/{quote(bob.user_id)}/displayname", {"displayname": "Bob"})
    await alice.call(
        "PUT", f"/profile/{quote(alice.user_id)}/displayname", {"displayname": "Alice"}
    )

    # Alice joins Bob's public room by its alias on Synapse.
    on_synapse = await bob.create_room(preset="public_chat", room_alias_name="bobs")
    alias = f"#bobs:{synapse.server_name}"
    looked_up = await alice.call("GET", f"/directory/room/{quote(alias)}")
    assert looked_up["room_id"] == on_synapse and synapse.server_name in looked_up["servers"]
    assert await alice.call("POST", f"/join/{quote(alias)}", {}) == {"room_id": on_synapse}
    await bob.sync_until(member_is(on_synapse, alice.user_id, "join"))

    # Bob joins Alice's public room by its alias on Croft.
    on_croft = await alice.create_room(preset="public_chat", room_alias_name="alices")
    alias = f"#alices:{croft.server_name}"
    assert (await bob.call("POST", f"/join/{quote(alias)}", {}))["room_id"] == on_croft
    await alice.sync_until(member_is(on_croft, bob.user_id, "join"))

    # Profiles across servers.
    theirs = await alice.call("GET", f"/profile/{quote(bob.user_id)}")
    assert theirs.get("displayname") == "Bob"
    ours = await bob.call("GET", f"/profile/{quote(alice.user_id)}")
    assert ours.get("displayname") == "Alice"


async def test_public_room_directories_across_servers(
    pair: tuple[MatrixUser, MatrixUser], synapse: SynapseServer, croft: CroftProcess
) -> None:
    alice, bob = pair
    await alice.create_room(preset="public_chat", name="Croft lounge", visibility="public")
    await bob.create_room(preset="public_chat", name="Synapse lounge", visibility="public")
    url = f"/publicRooms?server={quote(croft.server_name)}"
    names = [r.get("name") for r in (await bob.call("GET", url))["chunk"]]
    assert "Croft lounge" in names
    # Synapse lists a new room once its room statistics catch up: wait for its own list.
    for _ in range(50):
        local = [r.get("name") for r in (await bob.call("GET", "/publicRooms"))["chunk"]]
        if "Synapse lounge" in local:
            break
        await asyncio.sleep(0.2)
    assert "Synapse lounge" in local, local
    url = f"/publicRooms?server={quote(synapse.server_name)}"
    for _ in range(50):
        names = [r.get("name") for r in (await alice.call("GET", url))["chunk"]]
        if "Synapse lounge" in names:
            break
        await asyncio.sleep(0.2)
    assert "Synapse lounge" in names


async def test_knocking_both_ways(
    pair: tuple[MatrixUser, MatrixUser], synapse: SynapseServer, croft: CroftProcess
) -> None:
    alice, bob = pair
    knock_rules = [
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}
    ]
    # Bob (Synapse) knocks on Alice's room; Alice lets him in.
    room = await alice.create_room(initial_state=knock_rules)
    await bob.call("POST", f"/knock/{quote(room)}?via={quote(croft.server_name)}", {})
    await alice.sync_until(member_is(room, bob.user_id, "knock"))
    await alice.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": bob.user_id})
    await bob.sync_until(invited(room))
    await bob.call("POST", f"/join/{quote(room)}?via={quote(croft.server_name)}", {})
    await alice.sync_until(member_is(room, bob.user_id, "join"))

    # Alice (Croft) knocks on Bob's room; Bob lets her in.
    room = await bob.create_room(initial_state=knock_rules)
    await alice.call("POST", f"/knock/{quote(room)}?via={quote(synapse.server_name)}", {})
    await bob.sync_until(member_is(room, alice.user_id, "knock"))
    await bob.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": alice.user_id})
    await alice.sync_until(invited(room))
    await alice.call("POST", f"/join/{quote(room)}?via={quote(synapse.server_name)}", {})
    await bob.sync_until(member_is(room, alice.user_id, "join"))
