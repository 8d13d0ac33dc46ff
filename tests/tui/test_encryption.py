"""Encrypted rooms in the TUI (issue #7, "Encryption"), against two real in-process nodes:
the TUI is the owner of node a, its peer a real matrix-nio client with encryption (its
own olm store in a tmp dir) logged in as the owner of node b.

- the TUI's message is decrypted by the peer, and the peer's shows decrypted in the TUI;
- an event whose room key the TUI never got shows as undecryptable, the key is requested,
  and when the key arrives late the event is decrypted where it stands;
- after a restart on the same store the TUI has the same device keys and still decrypts
  the earlier messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nio

from node.app import RunningNode
from node.datadir import TUI_DEVICE_ID
from tests.federation.nio_e2ee import E2EEUser
from tests.federation.nodes import PASSWORD, Client, owner_pair
from tests.tui.conftest import SYNC_MS, make_app, ready, timeline_text, until
from tui import crypto
from tui.app import CroftApp
from tui.screens.chat import ChatScreen
from tui.session import user_store_dir

SIZE = (120, 40)


class Peer(E2EEUser):
    """A matrix-nio client with encryption, syncing in the background as nio's own
    ``sync_forever`` does (key upload, query and claim, to-device messages)."""

    def __init__(self, client: nio.AsyncClient) -> None:
        super().__init__(client)
        self.messages: list[nio.RoomMessageText] = []  # decrypted, in arrival order

        async def keep(_room: nio.MatrixRoom, event: nio.Event) -> None:
            if isinstance(event, nio.RoomMessageText) and event.decrypted:
                self.messages.append(event)

        client.add_event_callback(keep, nio.RoomMessageText)

    def bodies(self) -> list[str]:
        return [m.body for m in self.messages]

    def knows(self, user_id: str, device_id: str) -> bool:
        return any(d.id == device_id for d in self.client.device_store.active_user_devices(user_id))


@asynccontextmanager
async def nio_peer(node: RunningNode, store: Path) -> AsyncIterator[Peer]:
    await asyncio.to_thread(store.mkdir, parents=True)
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    url = f"http://{node.listeners['client']}"
    client = nio.AsyncClient(
        url, f"@alice:{node.node.config.server_name}", store_path=str(store), config=config
    )
    login = await client.login(PASSWORD, device_name="nio peer")
    assert isinstance(login, nio.LoginResponse), login
    task = asyncio.create_task(client.sync_forever(timeout=SYNC_MS))
    try:
        yield Peer(client)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


async def encrypted_room(peer: Peer, a: Client, b: Client) -> str:
    """An encrypted room the peer (on b) creates; a joins it over federation."""
    created = await peer.client.room_create(
        name="Secret", initial_state=[nio.EnableEncryptionBuilder().as_dict()]
    )
    assert isinstance(created, nio.RoomCreateResponse), created
    room = created.room_id
    await b.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": a.user_id})
    server_b = b.node.node.config.server_name
    await a.call("POST", f"/join/{quote(room)}?server_name={quote(server_b)}", {})
    return room


async def keys_known(pilot: object, app: CroftApp, peer: Peer, tui_user: str) -> None:
    """Each side has fetched the other's device keys (over federation)."""
    tui = app.client
    await until(pilot, lambda: peer.knows(tui_user, TUI_DEVICE_ID), "the TUI's device at the peer")
    await until(
        pilot,
        lambda: any(
            d.id == peer.device_id for d in tui.device_store.active_user_devices(peer.user_id)
        ),
        "the peer's device in the TUI",
    )


@dataclass
class Scene:
    """The TUI (owner of node a) and the nio peer (owner of node b) in an encrypted
    room, each knowing the other's device keys."""

    a: Client
    peer: Peer
    room: str
    app: CroftApp
    pilot: Any
    screen: ChatScreen


@asynccontextmanager
async def tui_in_room(a: Client, peer: Peer, room: str) -> AsyncIterator[Scene]:
    """The TUI of node a, started, showing ``room``, with the peer's keys known."""
    app = make_app(a.node)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(app, pilot)
        await until(pilot, lambda: screen.selected == room, "the room shown")
        await keys_known(pilot, app, peer, a.user_id)
        yield Scene(a, peer, room, app, pilot, screen)


@asynccontextmanager
async def encrypted_scene(tmp_path: Path) -> AsyncIterator[Scene]:
    async with owner_pair(tmp_path) as (a, b), nio_peer(b.node, tmp_path / "peer") as peer:
        async with tui_in_room(a, peer, await encrypted_room(peer, a, b)) as scene:
            yield scene


def shown(app: CroftApp, room: str) -> list[dict[str, Any]]:
    """The event dicts of the room's timeline in the TUI (what it renders)."""
    screen = app.screen
    histories = getattr(screen, "histories", {})
    return [dict(e.event) for e in histories[room].entries] if room in histories else []


def shown_event(app: CroftApp, room: str, event_id: str) -> dict[str, Any] | None:
    return next((e for e in shown(app, room) if e.get("event_id") == event_id), None)


async def peer_says(peer: Peer, room: str, body: str) -> str:
    sent = await peer.client.room_send(
        room, "m.room.message", {"msgtype": "m.text", "body": body}, ignore_unverified_devices=True
    )
    assert isinstance(sent, nio.RoomSendResponse), sent
    return str(sent.event_id)


async def test_messages_both_ways_in_an_encrypted_room(tmp_path: Path) -> None:
    async with encrypted_scene(tmp_path) as s:
        a, peer, room, app, pilot = s.a, s.peer, s.room, s.app, s.pilot

        await pilot.press(*"hello in secret", "enter")
        await until(pilot, lambda: "hello in secret" in peer.bodies(), "decrypted by nio")

        # The TUI's own message comes back decrypted, in place of its local echo.
        def own() -> list[dict[str, Any]]:
            return [e for e in shown(app, room) if e["content"].get("body") == "hello in secret"]

        await until(
            pilot, lambda: [e.get("croft_encrypted") for e in own()] == [True], "own message"
        )
        assert own()[0]["unsigned"]["transaction_id"]

        event_id = await peer_says(peer, room, "hello from nio")
        await until(pilot, lambda: shown_event(app, room, event_id), "nio's message")
        got = shown_event(app, room, event_id)
        assert got is not None
        assert got["type"] == "m.room.message"
        assert got["content"]["body"] == "hello from nio"
        assert got["croft_encrypted"] is True
        assert got["sender"] == peer.user_id
        assert got["origin_server_ts"] > 0
        # The node stored ciphertext only.
        stored = await a.node.node.events.get_event(event_id)
        assert stored is not None and stored.event.type == "m.room.encrypted"
        assert "hello from nio" not in str(stored.event.raw)


async def test_a_key_never_received_is_undecryptable_until_it_arrives(tmp_path: Path) -> None:
    async with encrypted_scene(tmp_path) as s:
        a, peer, room, app, pilot = s.a, s.peer, s.room, s.app, s.pilot

        # The peer makes a room key and keeps it to itself, then sends with it.
        nio_client = peer.client
        assert nio_client.olm is not None
        missing = nio_client.get_missing_sessions(room)
        if missing:
            assert isinstance(await nio_client.keys_claim(missing), nio.KeysClaimResponse)
        held = list(
            nio_client.olm.share_group_session_parallel(
                room, list(nio_client.rooms[room].users), ignore_unverified_devices=True
            )
        )
        assert any(TUI_DEVICE_ID in body["messages"].get(a.user_id, {}) for _, body in held)
        session = nio_client.olm.outbound_group_sessions[room]
        session.shared = True
        event_id = await peer_says(peer, room, "sealed away")

        await until(pilot, lambda: shown_event(app, room, event_id), "the sealed event")
        got = shown_event(app, room, event_id)
        assert got is not None
        assert got["type"] == "m.room.encrypted"
        assert got["croft_undecryptable"] == crypto.NO_KEY
        assert got["sender"] == peer.user_id
        assert "body" not in got["content"]
        assert any("cannot decrypt" in line for line in timeline_text(app))  # not blank
        # Asked for, once (to our own other devices, as m.room_key_request).
        await until(
            pilot,
            lambda: session.id in app.client.outgoing_key_requests,
            "the key request",
        )

        # The key arrives late: the event decrypts where it stands.
        for _, body in held:
            method, path, data = nio.Api.to_device(
                nio_client.access_token, "m.room.encrypted", body, uuid.uuid4().hex
            )
            response = await nio_client.send(method, path, data)
            assert response.status == 200
        await until(
            pilot,
            lambda: (shown_event(app, room, event_id) or {}).get("croft_encrypted"),
            "the event decrypted",
        )
        got = shown_event(app, room, event_id)
        assert got is not None
        assert got["content"]["body"] == "sealed away"
        assert "croft_undecryptable" not in got
        assert [e.get("event_id") for e in shown(app, room)].count(event_id) == 1


async def test_restart_keeps_the_device_keys_and_decrypts_history(tmp_path: Path) -> None:
    async with owner_pair(tmp_path) as (a, b), nio_peer(b.node, tmp_path / "peer") as peer:
        room = await encrypted_room(peer, a, b)
        async with tui_in_room(a, peer, room) as scene:
            app, pilot = scene.app, scene.pilot
            event_id = await peer_says(peer, room, "before the restart")
            await until(
                pilot,
                lambda: (shown_event(app, room, event_id) or {}).get("croft_encrypted"),
                "decrypted before the restart",
            )
            assert app.client.olm is not None
            keys = dict(app.client.olm.account.identity_keys)
        store = a.node.node.config.data_dir / "tui-store"
        assert any(store.iterdir())

        async with tui_in_room(a, peer, room) as scene:
            again, pilot = scene.app, scene.pilot
            assert again.client.olm is not None
            assert dict(again.client.olm.account.identity_keys) == keys
            await until(
                pilot,
                lambda: (shown_event(again, room, event_id) or {}).get("croft_encrypted"),
                "the earlier message decrypted after the restart",
            )
            got = shown_event(again, room, event_id)
            assert got is not None and got["content"]["body"] == "before the restart"
            # And it still sends: the peer decrypts what the restarted TUI says.
            await pilot.press(*"after the restart", "enter")
            await until(pilot, lambda: "after the restart" in peer.bodies(), "decrypted by nio")


def test_event_dict_of_odd_encrypted_events_says_why() -> None:
    raw = {
        "type": "m.room.encrypted",
        "event_id": "$x",
        "sender": "@u:h",
        "origin_server_ts": 1,
        "content": {"algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": "k"},
    }
    got = crypto.event_dict(nio.Event.parse_encrypted_event(raw))
    assert got["croft_undecryptable"] == "an unknown encryption algorithm"
    assert got["type"] == "m.room.encrypted" and got["event_id"] == "$x"
    malformed = {**raw, "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
    got = crypto.event_dict(nio.Event.parse_encrypted_event(malformed))
    assert got["croft_undecryptable"] == "a malformed encrypted event"
    plain = {**raw, "type": "m.room.message", "content": {"msgtype": "m.text", "body": "hi"}}
    assert crypto.event_dict(nio.Event.parse_event(plain)) == plain


def test_event_dict_of_a_decrypted_event_keeps_the_outer_fields() -> None:
    inner = {
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "hi"},
        "event_id": "$e",
        "sender": "@u:h",
        "origin_server_ts": 5,
        "unsigned": {"transaction_id": "t1"},
    }
    event = nio.Event.parse_decrypted_event(inner)
    event.decrypted = True
    event.room_id = "!r:h"
    outer = {"type": "m.room.encrypted", "event_id": "$e", "unsigned": {"age": 3}}
    setattr(event, crypto.OUTER, outer)
    assert crypto.event_dict(event) == {
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "hi"},
        "event_id": "$e",
        "sender": "@u:h",
        "origin_server_ts": 5,
        "room_id": "!r:h",
        "unsigned": {"age": 3, "transaction_id": "t1"},
        "croft_encrypted": True,
    }


def test_store_dirs() -> None:
    xdg = user_store_dir("@me:example.org", {"XDG_DATA_HOME": "/x"})
    assert xdg == Path("/x/croft/tui/@me:example.org")
    assert user_store_dir("@a/b:h", {}).parent == Path.home() / ".local/share/croft/tui"
    assert "/" not in user_store_dir("@a/b:h", {}).name
