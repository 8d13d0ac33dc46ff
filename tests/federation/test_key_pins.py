"""The keyring's LAN pin hook (KeyRing.pins, node/federation/keyring.py): for a server
name pinned on the LAN only the pinned key is used, whether another key is offered by
the server itself, by a notary, or already stored; a node that claims a pinned name
with its own key cannot authenticate (401 M_UNAUTHORIZED) and its events do not verify.

Real nodes on loopback: ``s`` plays the spoofer, a real node whose name the verifier
``a`` has pinned to another key (the one of the holder it met first).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.app import RunningNode
from node.discovery.service import key_fingerprint
from node.events.room_versions import V11
from node.events.signing import SignatureError, generate_signing_key
from node.federation.keyring import KeyNotFound
from node.federation.keys import ServerKey
from node.federation.x_matrix import sign_request
from tests.federation.nodes import croft_node, resolver_of
from tests.federation.test_keyring import signed_event


def name_of(running: RunningNode) -> str:
    return running.node.config.server_name


def pin_of(key: ServerKey) -> tuple[str, str]:
    return key.key_id, key_fingerprint(key.verify_key_base64)


class Pins:
    """What LAN discovery would tell the keyring: server name -> (key ID, fingerprint)."""

    def __init__(self) -> None:
        self.pins: dict[str, tuple[str, str]] = {}

    def __call__(self, server_name: str) -> tuple[str, str] | None:
        return self.pins.get(server_name)


async def send_transaction(
    http: aiohttp.ClientSession, to: RunningNode, key: ServerKey
) -> tuple[int, dict[str, Any]]:
    """PUT /send from ``key``'s server to ``to``: an empty transaction, X-Matrix signed."""
    uri = f"/_matrix/federation/v1/send/t{time.monotonic_ns()}"
    body = {"origin": key.server_name, "origin_server_ts": int(time.time() * 1000), "pdus": []}
    header = sign_request(key, "PUT", uri, name_of(to), body)
    async with http.put(
        f"https://{name_of(to)}{uri}",
        headers={"Authorization": header},
        data=json.dumps(body).encode(),
    ) as resp:
        return resp.status, await resp.json()


async def stored_keys(node: RunningNode, server_name: str) -> list[str]:
    rows = await node.node.db.fetchall(
        "SELECT key_id FROM server_keys WHERE server_name = ?", (server_name,)
    )
    return [r[0] for r in rows]


async def test_a_name_pinned_to_another_key_does_not_authenticate(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with croft_node(tmp_path, "a") as a, croft_node(tmp_path, "s") as s:
        ring, s_name, s_key = a.node.keyring, name_of(s), s.node.server_key
        first = ServerKey(s_name, generate_signing_key("first"))  # the holder met first
        pins = Pins()
        ring.pins = pins

        # Pinned to another key ID: refused at once, no fetch.
        pins.pins[s_name] = pin_of(first)
        status, answer = await send_transaction(http, a, s_key)
        assert (status, answer["errcode"]) == (401, "M_UNAUTHORIZED"), answer
        assert "pinned on the LAN" in answer["error"]
        assert resolver_of(a).calls[s_name] == 0
        with pytest.raises(SignatureError, match="pinned on the LAN"):
            await ring.verify_event_signatures(signed_event(s_key, int(time.time() * 1000)), V11)

        # The same key ID with another key: the document is fetched, refused, not stored.
        pins.pins[s_name] = (s_key.key_id, pin_of(first)[1])
        status, answer = await send_transaction(http, a, s_key)
        assert (status, answer["errcode"]) == (401, "M_UNAUTHORIZED"), answer
        assert resolver_of(a).calls[s_name] == 1
        assert await stored_keys(a, s_name) == []

        # The control: pinned to the key it holds (after `croft peers trust`, which
        # makes the keyring forget: the refused fetch above is not held against it).
        pins.pins[s_name] = pin_of(s_key)
        await ring.forget(s_name)
        status, answer = await send_transaction(http, a, s_key)
        assert status == 200, answer
        assert await stored_keys(a, s_name) == [s_key.key_id]
        await ring.verify_event_signatures(signed_event(s_key, int(time.time() * 1000)), V11)

        # A stored key that is no longer the pinned one is not used.
        pins.pins[s_name] = (s_key.key_id, pin_of(first)[1])
        with pytest.raises(KeyNotFound):
            await ring.get_verify_key(s_name, s_key.key_id)
        assert (await send_transaction(http, a, s_key))[0] == 401

        # Unpinned names are not affected.
        pins.pins.clear()
        assert (await send_transaction(http, a, s_key))[0] == 200


async def test_forget_drops_cached_and_stored_keys(tmp_path: Path) -> None:
    async with croft_node(tmp_path, "a") as a, croft_node(tmp_path, "s") as s:
        ring, s_name, s_key = a.node.keyring, name_of(s), s.node.server_key
        ring.pins = Pins()
        await ring.get_verify_key(s_name, s_key.key_id)
        assert await stored_keys(a, s_name) == [s_key.key_id]
        await ring.forget(s_name)
        assert await stored_keys(a, s_name) == []
        assert (
            await a.node.db.fetchall(
                "SELECT 1 FROM server_key_documents WHERE server_name = ?", (s_name,)
            )
            == []
        )
        # Fetched again at once, not after RETRY_AFTER_MS.
        await ring.get_verify_key(s_name, s_key.key_id)
        assert resolver_of(a).calls[s_name] == 2


async def test_a_notary_cannot_vouch_for_another_key(tmp_path: Path) -> None:
    async with (
        croft_node(tmp_path, "a") as a,
        croft_node(tmp_path, "n") as n,
        croft_node(tmp_path, "s") as s,
    ):
        ring, s_name, s_key = a.node.keyring, name_of(s), s.node.server_key
        resolver_of(a).blocked.add(s_name)
        ring.trusted_key_servers = (name_of(n),)
        pins = Pins()
        ring.pins = pins
        pins.pins[s_name] = (s_key.key_id, pin_of(ServerKey(s_name, generate_signing_key("x")))[1])
        with pytest.raises(KeyNotFound):
            await ring.get_verify_key(s_name, s_key.key_id)
        assert resolver_of(n).calls[s_name] == 1  # the notary answered; A refused it
        assert await stored_keys(a, s_name) == []
        # The control: pinned to the key the notary vouches for.
        pins.pins[s_name] = pin_of(s_key)
        await ring.forget(s_name)
        await ring.get_verify_key(s_name, s_key.key_id)
        assert await stored_keys(a, s_name) == [s_key.key_id]
