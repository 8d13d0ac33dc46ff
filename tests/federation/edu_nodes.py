"""Two real Croft nodes on loopback for the EDU, query and E2EE-across-servers tests.

Each node is ``127.0.0.1:<port>`` with its owner ``@alice`` logged in (tests/federation/
nodes.py). Until rooms federate, a "shared room" is simulated on each side: each owner
creates a public room on its own node and the other node's owner is joined to it there
through RoomService.send, as the single-node tests do with remote users. Each node then
believes that the other's owner shares a room with its own, which is what EDUs, device
list tracking and the choice of destinations depend on. Everything else is real: the
signed requests, TLS, the X-Matrix middleware, PUT /send, the durable sender.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import signedjson.key
import signedjson.sign
from signedjson.types import SigningKey

from node.app import RunningNode
from node.federation.sender import FederationSender
from tests.client import call
from tests.e2ee.conftest import ed25519_key, public
from tests.federation.nodes import OWNER, PASSWORD, croft_node

ALGORITHMS = ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]


@dataclass
class Peer:
    running: RunningNode
    http: aiohttp.ClientSession
    token: str  # the owner on DEV1

    @property
    def node(self) -> Any:
        return self.running.node

    @property
    def server_name(self) -> str:
        return str(self.node.config.server_name)

    @property
    def user_id(self) -> str:
        return f"@{OWNER}:{self.server_name}"

    @property
    def v3(self) -> str:
        return f"http://{self.running.listeners['client']}/_matrix/client/v3"

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        token = kw.pop("token", None) or self.token
        return await call(self.http, method, self.v3 + path, token, body, **kw)

    async def login(self, device_id: str) -> str:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": OWNER},
            "password": PASSWORD,
            "device_id": device_id,
        }
        data = await call(self.http, "POST", self.v3 + "/login", None, body)
        return str(data["access_token"])

    async def sync(self, since: str | None = None, token: str | None = None) -> Any:
        params = {"timeout": "10000"}
        if since is not None:
            params["since"] = since
        return await self.call("GET", "/sync", token=token, **params)

    async def sync_until(
        self, since: str | None, predicate: Callable[[Any], bool], token: str | None = None
    ) -> Any:
        """Long-poll /sync until a response satisfies ``predicate`` (pytest's timeout
        bounds a bug)."""
        while True:
            response = await self.sync(since, token)
            if predicate(response):
                return response
            since = response["next_batch"]


async def start_peer(stack: AsyncExitStack, tmp_path: Path, name: str) -> Peer:
    running = await stack.enter_async_context(croft_node(tmp_path, name))
    http = await stack.enter_async_context(aiohttp.ClientSession())
    peer = Peer(running, http, "")
    peer.token = await peer.login("DEV1")
    return peer


async def attach_sender(stack: AsyncExitStack, peer: Peer) -> None:
    """Give the node a real federation sender (signed /send over TLS) if it has none."""
    outbound = peer.node.outbound_edus
    if outbound.sender is not None:
        return
    sender = FederationSender(peer.node.db, peer.node.federation_client, peer.server_name)
    await sender.start()
    stack.push_async_callback(sender.close)
    stack.push_async_callback(outbound.close)
    outbound.sender = sender
    await outbound.start()


async def create_room(peer: Peer, **extra: Any) -> str:
    body = {"preset": "public_chat", **extra}
    return str((await peer.call("POST", "/createRoom", body))["room_id"])


async def join_locally(peer: Peer, room_id: str, user_id: str) -> None:
    """``user_id`` (of another server) joins ``room_id`` as far as ``peer`` knows."""
    content = {"membership": "join"}
    await peer.node.rooms.send(user_id, room_id, "m.room.member", content, state_key=user_id)


async def shared_rooms(a: Peer, b: Peer) -> tuple[str, str]:
    """A room on each node, with the other node's owner joined to it (see above)."""
    room_a, room_b = await create_room(a), await create_room(b)
    await join_locally(a, room_a, b.user_id)
    await join_locally(b, room_b, a.user_id)
    return room_a, room_b


async def send_edus(origin: Peer, destination: Peer, *edus: dict[str, Any]) -> None:
    """A real transaction of EDUs from ``origin`` to ``destination`` (PUT /send)."""
    body = {
        "origin": origin.server_name,
        "origin_server_ts": 0,
        "pdus": [],
        "edus": list(edus),
    }
    await origin.node.federation_client.send_transaction(
        destination.server_name, uuid.uuid4().hex, body
    )


# -- client-side key material -------------------------------------------------------------


def device_keys(user_id: str, device_id: str, key: SigningKey) -> dict[str, Any]:
    obj = {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ALGORITHMS,
        "keys": {
            f"ed25519:{device_id}": public(key),
            f"curve25519:{device_id}": public(ed25519_key("c")),
        },
    }
    return signedjson.sign.sign_json(obj, user_id, key)


def one_time_key(user_id: str, key: SigningKey, *, fallback: bool = False) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": public(ed25519_key("otk"))}
    if fallback:
        obj["fallback"] = True
    return signedjson.sign.sign_json(obj, user_id, key)


def cross_signing_keys(user_id: str) -> dict[str, Any]:
    """An upload body for POST /keys/device_signing/upload: master and self-signing."""
    master, ssk = ed25519_key(), ed25519_key()
    master_key = {
        "user_id": user_id,
        "usage": ["master"],
        "keys": {f"ed25519:{public(master)}": public(master)},
    }
    self_signing = signedjson.sign.sign_json(
        {
            "user_id": user_id,
            "usage": ["self_signing"],
            "keys": {f"ed25519:{public(ssk)}": public(ssk)},
        },
        user_id,
        master,
    )
    return {"master_key": master_key, "self_signing_key": self_signing}


async def upload_keys(peer: Peer, device_id: str, token: str | None = None, otks: int = 1) -> Any:
    """Upload device keys, ``otks`` one-time keys and a fallback key for a device."""
    key = ed25519_key(device_id)
    body = {
        "device_keys": device_keys(peer.user_id, device_id, key),
        "one_time_keys": {
            f"signed_curve25519:K{i}": one_time_key(peer.user_id, key) for i in range(otks)
        },
        "fallback_keys": {"signed_curve25519:F": one_time_key(peer.user_id, key, fallback=True)},
    }
    await peer.call("POST", "/keys/upload", body, token=token)
    return body
