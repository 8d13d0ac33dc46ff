"""Hostile input over federation: what a real node does with PDUs, EDUs and requests
that another (real) server forges.

Spec: content/server-server-api.md "Checks performed on receipt of a PDU" (1. a valid
event, else dropped; 2. signatures, else dropped; 3. the content hash, else redacted;
4. auth against its auth events, 5. against the state before it, else rejected; 6.
against the current state, else soft-failed), "Rejection", "Soft failure",
"Transactions" (at most 50 PDUs and 100 EDUs), "Request Authentication" (401
``M_UNAUTHORIZED``) and "Server Access Control Lists (ACLs)" (PDUs and room EDUs of a
denied server are ignored; make/send join, leave, knock and invite answer 403).

Node A is the target: its owner made a room and invited B's owner, who joined through
the real federation API. Node B then forges events signed with its own server key (or
worse) and sends them to A as transactions with its real FederationClient, or by hand
where even the request must be forged. After each attack A is shown to still take a
good PDU from B and show it to its owner, and to have logged what it refused.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import canonicaljson
import pytest

from node.app import RunningNode
from node.events.hashing import encode_base64
from node.events.pdu import MEMBER, Event, StateKey
from node.events.room_versions import RoomVersion, room_version
from node.events.signing import generate_signing_key, verify_key_id
from node.federation.common import RemoteError, Unreachable
from node.federation.keys import ServerKey
from node.federation.pdu_format import MAX_PREV_EVENTS
from node.rooms.builder import build_event
from node.rooms.service import RoomHead
from tests.conftest import LoopbackOnlyResolver
from tests.federation.nodes import croft_node
from tests.federation.test_two_nodes import Client
from tests.interop.util import free_port

_txn = itertools.count()
SEND = "/_matrix/federation/v1/send/"


@dataclass
class Fed:
    """A (the target) and B (the attacker, joined to A's room)."""

    a: RunningNode
    b: RunningNode
    ca: Client  # A's owner
    cb: Client  # B's owner
    room: str
    stack: AsyncExitStack
    tmp_path: Path
    version: RoomVersion

    @property
    def a_name(self) -> str:
        return self.a.node.config.server_name

    @property
    def b_name(self) -> str:
        return self.b.node.config.server_name

    async def head(self) -> RoomHead:
        head = await self.a.node.rooms.head(self.room)
        assert head is not None
        return head

    async def forge(
        self,
        event_type: str = "m.room.message",
        content: Mapping[str, Any] | None = None,
        *,
        state_key: str | None = None,
        sender: str | None = None,
        key: ServerKey | None = None,
        prev: Sequence[tuple[str, int]] | None = None,
        state: Mapping[StateKey, Event] | None = None,
        room: str | None = None,
    ) -> dict[str, Any]:
        """A PDU signed by ``key`` (B's server key), built on A's current head unless
        ``prev``/``state`` say otherwise."""
        head = await self.head()
        event, _ = build_event(
            room_version=head.room_version,
            server_key=key or self.b.node.server_key,
            room_id=room or self.room,
            sender=sender or self.cb.user_id,
            event_type=event_type,
            content=content if content is not None else {"msgtype": "m.text", "body": "hi"},
            state_key=state_key,
            prev_events=list(prev if prev is not None else head.extremities),
            state=state if state is not None else head.state,
            origin_server_ts=int(time.time() * 1000),
        )
        return copy.deepcopy(dict(event.raw))

    def event_id(self, pdu: Mapping[str, Any]) -> str:
        return Event.from_pdu(pdu, self.version).event_id

    async def send(
        self,
        pdus: Sequence[Any] = (),
        edus: Sequence[Any] = (),
        *,
        by: RunningNode | None = None,
    ) -> dict[str, Any]:
        """A transaction from ``by`` (B) to A with B's real FederationClient."""
        sender = by or self.b
        body = {
            "origin": sender.node.config.server_name,
            "origin_server_ts": int(time.time() * 1000),
            "pdus": list(pdus),
            "edus": list(edus),
        }
        answer = await sender.node.federation_client.send_transaction(
            self.a_name, f"hostile{next(_txn)}", body
        )
        return dict(answer)

    async def row(self, event_id: str) -> tuple[Any, ...] | None:
        """(rejected_reason, outlier, soft_failed, json) of a stored event."""
        row = await self.a.node.db.fetchone(
            "SELECT rejected_reason, outlier, soft_failed, json FROM events WHERE event_id = ?",
            (event_id,),
        )
        return tuple(row) if row is not None else None

    async def extremities(self) -> set[str]:
        return {e for e, _ in await self.a.node.events.get_forward_extremities(self.room)}

    async def visible_to_owner(self, event_id: str) -> bool:
        """Whether A's owner sees the event in /messages or a full /sync."""
        page = await self.ca.call("GET", f"/rooms/{quote(self.room)}/messages?dir=b&limit=50")
        if any(e["event_id"] == event_id for e in page["chunk"]):
            return True
        synced = await self.ca.call("GET", "/sync?timeout=0")
        timeline = synced["rooms"]["join"][self.room]["timeline"]["events"]
        return any(e["event_id"] == event_id for e in timeline)

    async def still_up(self, caplog: pytest.LogCaptureFixture, *logged: str) -> None:
        """A logged ``logged`` and still takes a good PDU from B and shows it."""
        text = caplog.text
        for needle in logged:
            assert needle in text, (needle, text[-3000:])
        good = await self.forge(content={"msgtype": "m.text", "body": "still here"})
        answer = await self.send([good])
        event_id = self.event_id(good)
        assert answer["pdus"] == {event_id: {}}, answer
        assert await self.visible_to_owner(event_id)


async def _start(stack: AsyncExitStack, tmp_path: Path, name: str) -> RunningNode:
    running = await stack.enter_async_context(croft_node(tmp_path, name))
    # Forged server names must never send A (or the keyring) past loopback.
    running.node.federation_client.resolver = LoopbackOnlyResolver()
    return running


async def _client(http: aiohttp.ClientSession, running: RunningNode) -> Client:
    c = Client(http, running)
    await c.login()
    return c


@pytest.fixture
async def fed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> AsyncIterator[Fed]:
    version = getattr(request, "param", "12")
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        a = await _start(stack, tmp_path, "a")
        b = await _start(stack, tmp_path, "b")
        ca, cb = await _client(http, a), await _client(http, b)
        room = (await ca.call("POST", "/createRoom", {"room_version": version}))["room_id"]
        await ca.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": cb.user_id})
        await cb.sync_until(lambda r: r.get("rooms", {}).get("invite", {}).get(room))
        server_a = a.node.config.server_name
        await cb.call("POST", f"/join/{quote(room)}?server_name={quote(server_a)}", {})
        fed = Fed(a, b, ca, cb, room, stack, tmp_path, room_version(version))
        assert (MEMBER, cb.user_id) in (await fed.head()).state
        caplog.set_level(logging.INFO, logger="node.federation")
        caplog.clear()
        yield fed


def _resign(pdu: dict[str, Any], fed: Fed, key: ServerKey) -> dict[str, Any]:
    """``pdu`` with its signatures replaced by ``key``'s (same version rules)."""
    from node.events.signing import sign_event

    unsigned = {k: v for k, v in pdu.items() if k != "signatures"}
    return sign_event(unsigned, key.server_name, key.signing_key, fed.version)


# -- 2. signatures ----------------------------------------------------------------------


@pytest.mark.parametrize("fed", ["10", "11", "12"], indirect=True)
async def test_bad_signatures_are_dropped(fed: Fed, caplog: pytest.LogCaptureFixture) -> None:
    b_key = fed.b.node.server_key
    # Same server and key ID, another key: the signature does not verify.
    impostor = ServerKey(b_key.server_name, generate_signing_key(b_key.key_id.split(":", 1)[1]))
    assert verify_key_id(impostor.signing_key) == b_key.key_id
    wrong_key = _resign(await fed.forge(content={"body": "wrong key"}), fed, impostor)
    # A signature that is not even base64 of 64 bytes.
    garbled = await fed.forge(content={"body": "garbled"})
    garbled["signatures"][fed.b_name][b_key.key_id] = "A" * 10
    # No signature of the sender's server at all.
    unsigned = await fed.forge(content={"body": "unsigned"})
    unsigned["signatures"] = {}
    # A field covered by the signature changed after signing (the event ID moves too).
    moved = await fed.forge(content={"body": "moved"})
    moved["origin_server_ts"] += 1

    pdus = [wrong_key, garbled, unsigned, moved]
    answer = await fed.send(pdus)
    for pdu in pdus:
        event_id = fed.event_id(pdu)
        assert "signature" in answer["pdus"][event_id]["error"], answer
        assert await fed.row(event_id) is None
    await fed.still_up(caplog, "bad signature", "dropped PDU")


async def test_signer_whose_key_cannot_be_fetched(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    """A user of a server that is down: its signature cannot be checked, so dropped."""
    gone = ServerKey(f"127.0.0.1:{free_port()}", generate_signing_key("gone"))
    pdu = await fed.forge(sender=f"@mallory:{gone.server_name}", key=gone)
    answer = await fed.send([pdu])
    event_id = fed.event_id(pdu)
    assert "error" in answer["pdus"][event_id], answer
    assert await fed.row(event_id) is None
    await fed.still_up(caplog, "dropped PDU", gone.server_name)


async def test_sender_of_another_server_signed_only_by_origin(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    """B cannot speak for a user of A (or of any other server) by signing it itself."""
    pdu = await fed.forge(sender=fed.ca.user_id)
    answer = await fed.send([pdu])
    event_id = fed.event_id(pdu)
    assert "signature" in answer["pdus"][event_id]["error"], answer
    assert await fed.row(event_id) is None
    await fed.still_up(caplog, "dropped PDU")


# -- 3. content hash --------------------------------------------------------------------


@pytest.mark.parametrize("fed", ["10", "11", "12"], indirect=True)
async def test_wrong_content_hash_is_stored_redacted(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    pdu = await fed.forge(content={"msgtype": "m.text", "body": "what B signed"})
    # The content is not covered by the signature, only by the hash: a server on the
    # way swaps it.
    pdu["content"] = {"msgtype": "m.text", "body": "what a man in the middle wrote"}
    answer = await fed.send([pdu])
    event_id = fed.event_id(pdu)
    assert answer["pdus"] == {event_id: {}}, answer
    row = await fed.row(event_id)
    assert row is not None and row[0] is None  # accepted, redacted
    assert json.loads(row[3])["content"] == {}
    page = await fed.ca.call("GET", f"/rooms/{quote(fed.room)}/messages?dir=b&limit=10")
    shown = [e for e in page["chunk"] if e["event_id"] == event_id]
    assert shown and shown[0]["content"] == {}
    assert "man in the middle" not in json.dumps(page)
    await fed.still_up(caplog, "content hash mismatch")


# -- 4, 5 and 6: authorisation -----------------------------------------------------------


async def _assert_rejected(fed: Fed, answer: dict[str, Any], event_id: str, why: str) -> None:
    error = answer["pdus"][event_id]["error"]
    assert error.startswith("rejected") and why in error, answer
    row = await fed.row(event_id)
    assert row is not None and row[0] is not None and why in row[0], row  # stored rejected
    assert event_id not in await fed.extremities()
    assert not await fed.visible_to_owner(event_id)


@pytest.mark.parametrize("fed", ["10", "11", "12"], indirect=True)
async def test_failing_auth_against_its_auth_events_is_rejected(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    head = await fed.head()
    without_member = {k: v for k, v in head.state.items() if k != (MEMBER, fed.cb.user_id)}
    pdu = await fed.forge(
        content={"body": "not a member, say my auth events"}, state=without_member
    )
    answer = await fed.send([pdu])
    event_id = fed.event_id(pdu)
    await _assert_rejected(fed, answer, event_id, "auth events")
    await fed.still_up(caplog, "rejected " + event_id)


@pytest.mark.parametrize("fed", ["10", "11", "12"], indirect=True)
async def test_failing_auth_against_the_state_before_is_rejected(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    """Auth events from before a power level change, prev events after it."""
    old_state = dict((await fed.head()).state)
    levels = await fed.ca.call("GET", f"/rooms/{quote(fed.room)}/state/m.room.power_levels")
    levels["events_default"] = 50
    await fed.ca.call("PUT", f"/rooms/{quote(fed.room)}/state/m.room.power_levels", levels)
    pdu = await fed.forge(content={"body": "the old levels let me"}, state=old_state)
    answer = await fed.send([pdu])
    event_id = fed.event_id(pdu)
    await _assert_rejected(fed, answer, event_id, "state before the event")
    # Put the levels back: the good PDU of still_up must pass.
    levels["events_default"] = 0
    await fed.ca.call("PUT", f"/rooms/{quote(fed.room)}/state/m.room.power_levels", levels)
    await fed.still_up(caplog, "rejected " + event_id)


@pytest.mark.parametrize("fed", ["10", "11", "12"], indirect=True)
async def test_soft_failure_after_a_ban(fed: Fed, caplog: pytest.LogCaptureFixture) -> None:
    """Built before B's user was banned (its prev events and auth events say joined),
    sent after: it passes 4 and 5 but not the current state."""
    pdu = await fed.forge(content={"body": "sent from the past"})
    await fed.ca.call(
        "POST", f"/rooms/{quote(fed.room)}/ban", {"user_id": fed.cb.user_id, "reason": "spam"}
    )
    before = await fed.extremities()
    answer = await fed.send([pdu])
    event_id = fed.event_id(pdu)
    assert answer["pdus"] == {event_id: {}}, answer  # soft failure is not an error
    row = await fed.row(event_id)
    assert row is not None and row[0] is None and row[2] == 1  # stored, soft-failed
    assert await fed.extremities() == before  # not a forward extremity
    assert not await fed.visible_to_owner(event_id)
    # A new event of A's owner is not built on it.
    sent = await fed.ca.send(fed.room, "after the ban")
    stored = await fed.a.node.events.get_event(sent)
    assert stored is not None and event_id not in stored.event.prev_event_ids
    assert "soft-failed against the current state" in caplog.text
    # B's user is banned now: a fresh message from B is rejected, A still answers.
    fresh = await fed.forge(content={"body": "banned"})
    answer = await fed.send([fresh])
    assert answer["pdus"][fed.event_id(fresh)]["error"].startswith("rejected")
    assert await fed.visible_to_owner(sent)


async def test_events_from_a_server_not_in_the_room(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    """C has no user in the room: its message, and its join to an invite-only room,
    are rejected; sent by C itself or relayed by B."""
    c = await _start(fed.stack, fed.tmp_path, "c")
    c_key = c.node.server_key
    c_user = f"@carol:{c_key.server_name}"
    message = await fed.forge(sender=c_user, key=c_key, content={"body": "let me in"})
    join = await fed.forge(
        MEMBER, {"membership": "join"}, state_key=c_user, sender=c_user, key=c_key
    )
    answer = await fed.send([message, join], by=c)
    await _assert_rejected(fed, answer, fed.event_id(message), "auth events")
    await _assert_rejected(fed, answer, fed.event_id(join), "")
    members = await fed.ca.call("GET", f"/rooms/{quote(fed.room)}/joined_members")
    assert c_user not in members["joined"]
    relayed = await fed.forge(sender=c_user, key=c_key, content={"body": "via B"})
    answer = await fed.send([relayed])
    await _assert_rejected(fed, answer, fed.event_id(relayed), "auth events")
    await fed.still_up(caplog, "rejected " + fed.event_id(message))


async def _room_where_b_is_admin(fed: Fed) -> str:
    """Another room of A's owner, which B's owner joins and gets power level 100 in."""
    ca, cb = fed.ca, fed.cb
    body = {"room_version": fed.version.identifier, "name": "B rules here"}
    other = (await ca.call("POST", "/createRoom", body))["room_id"]
    await ca.call("POST", f"/rooms/{quote(other)}/invite", {"user_id": cb.user_id})
    await cb.sync_until(lambda r: r.get("rooms", {}).get("invite", {}).get(other))
    await cb.call("POST", f"/join/{quote(other)}?server_name={quote(fed.a_name)}", {})
    levels = await ca.call("GET", f"/rooms/{quote(other)}/state/m.room.power_levels")
    levels["users"][cb.user_id] = 100
    await ca.call("PUT", f"/rooms/{quote(other)}/state/m.room.power_levels", levels)
    return other


@pytest.mark.parametrize("fed", ["10", "12"], indirect=True)
async def test_auth_events_from_another_room_are_rejected(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    """B's powers in another room do not count here (Sytest: "Events whose auth_events
    are in the wrong room do not mess up the room state")."""
    other = await _room_where_b_is_admin(fed)
    other_head = await fed.a.node.rooms.head(other)
    assert other_head is not None
    state = dict((await fed.head()).state)
    levels_key = ("m.room.power_levels", "")
    state[levels_key] = other_head.state[levels_key]
    before = await fed.a.node.events.get_current_state_ids(fed.room)
    pdu = await fed.forge("m.room.name", {"name": "taken over"}, state_key="", state=state)
    answer = await fed.send([pdu])
    await _assert_rejected(fed, answer, fed.event_id(pdu), "auth events")
    assert await fed.a.node.events.get_current_state_ids(fed.room) == before
    await fed.still_up(caplog, "rejected " + fed.event_id(pdu))


@pytest.mark.parametrize("fed", ["10", "12"], indirect=True)
async def test_prev_events_from_another_room_are_refused(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    other = await _room_where_b_is_admin(fed)
    other_head = await fed.a.node.rooms.head(other)
    assert other_head is not None
    pdu = await fed.forge(content={"body": "my prev is elsewhere"}, prev=other_head.extremities)
    answer = await fed.send([pdu])
    event_id = fed.event_id(pdu)
    assert "error" in answer["pdus"][event_id], answer
    assert event_id not in await fed.extremities()
    before = await fed.a.node.states.state_before(event_id)
    assert (
        not before
        or before.get(("m.room.create", "")) != other_head.state[("m.room.create", "")].event_id
    )
    await fed.still_up(caplog)


class _Unreachable:
    """A resolver for which every server is down (a link that just went)."""

    async def resolve(self, server_name: str) -> Any:
        raise Unreachable(f"{server_name}: the link is down")


async def test_unfetchable_gap_while_the_origin_is_unreachable_is_retried_then_dropped(
    fed: Fed, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PDU whose missing prev events cannot be fetched because their server cannot
    be reached makes the transaction answer 503 (not remembered: the sender's retry
    with the same txnId is processed again) a bounded number of times, then it is
    dropped with an error in a 200 answer like any unfetchable PDU."""
    import node.federation.pdus as pdus_module

    monkeypatch.setattr(pdus_module, "MAX_DEFERRALS", 2)
    unknown = await fed.forge(content={"body": "A never saw me"})
    pdu = await fed.forge(
        content={"body": "after a gap"},
        prev=[(fed.event_id(unknown), max(d for _, d in (await fed.head()).extremities) + 1)],
    )
    event_id = fed.event_id(pdu)
    fed.a.node.federation_client.resolver = _Unreachable()
    body = {"origin": fed.b_name, "origin_server_ts": int(time.time() * 1000), "pdus": [pdu]}
    client = fed.b.node.federation_client
    for _ in range(2):
        with pytest.raises(RemoteError) as raised:
            await client.send_transaction(fed.a_name, "gap-txn", dict(body, edus=[]))
        assert (raised.value.status, raised.value.errcode) == (503, "M_UNKNOWN")
        assert await fed.row(event_id) is None
    assert "deferred PDU" in caplog.text
    answer = await client.send_transaction(fed.a_name, "gap-txn", dict(body, edus=[]))
    assert "error" in answer["pdus"][event_id], answer
    assert await fed.row(event_id) is None
    fed.a.node.federation_client.resolver = LoopbackOnlyResolver()
    await fed.still_up(caplog, "after 3 tries")


async def test_a_transactions_events_are_made_durable_once_before_the_answer(
    fed: Fed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events of a transaction are committed without an fsync each and synced
    together (Database.sync) before A answers: the sender's retry covers a crash."""
    pdu = await fed.forge(content={"msgtype": "m.text", "body": "durable"})
    event_id = fed.event_id(pdu)
    db = fed.a.node.db
    seen: list[Any] = []
    real_sync = db.sync

    async def sync() -> None:
        seen.append(await fed.row(event_id))  # committed by then
        await real_sync()

    monkeypatch.setattr(db, "sync", sync)
    answer = await fed.send([pdu])
    assert answer["pdus"] == {event_id: {}}
    assert len(seen) == 1 and seen[0] is not None


async def test_pdu_for_a_room_the_node_is_not_in(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    other = (await fed.cb.call("POST", "/createRoom", {"room_version": "12"}))["room_id"]
    pdu = await fed.forge(room=other)
    answer = await fed.send([pdu])
    (label,) = answer["pdus"]
    assert "not in room" in answer["pdus"][label]["error"], answer
    assert await fed.a.node.events.get_room_version(other) is None
    await fed.still_up(caplog, f"this server is not in room {other}")


# -- 1. malformed PDUs, and transactions -------------------------------------------------


def _malformed(good: dict[str, Any]) -> dict[str, Any]:
    """Variants of a good PDU that are not valid events (check 1), by name."""

    def without(key: str) -> dict[str, Any]:
        return {k: v for k, v in good.items() if k != key}

    def with_(**fields: Any) -> dict[str, Any]:
        return {**good, **fields}

    return {
        "not an object": "a PDU?",
        "a list": [good],
        "null": None,
        "an integer": 7,
        "empty": {},
        "room_id only": {"room_id": good["room_id"]},
        "no type": without("type"),
        "no sender": without("sender"),
        "no content": without("content"),
        "no depth": without("depth"),
        "no prev_events": without("prev_events"),
        "no auth_events": without("auth_events"),
        "no hashes": without("hashes"),
        "no signatures": without("signatures"),
        "no origin_server_ts": without("origin_server_ts"),
        "room_id not a string": with_(room_id=["!x:y"]),
        "room_id of no room": with_(room_id="not a room"),
        "type not a string": with_(type=5),
        "sender not a user": with_(sender="mallory"),
        "content a list": with_(content=["body"]),
        "depth a string": with_(depth="1"),
        "depth negative": with_(depth=-1),
        "depth a bool": with_(depth=True),
        "ts a string": with_(origin_server_ts="now"),
        "state_key a number": with_(state_key=1),
        "prev_events not ids": with_(prev_events=[1, 2]),
        "prev_events a string": with_(prev_events="$x"),
        "too many prev_events": with_(prev_events=[f"$e{i}" for i in range(MAX_PREV_EVENTS + 1)]),
        "too many auth_events": with_(auth_events=[f"$a{i}" for i in range(11)]),
        "hashes a string": with_(hashes="sha256"),
        "signatures a list": with_(signatures=[]),
        "signature not a string": with_(signatures={"x": {"ed25519:a": 1}}),
        "huge": with_(content={"body": "x" * 70_000}),
        "deep": with_(content=_deep(150)),
        "long type": with_(type="t" * 300),
        "redacts a number": with_(redacts=1),
    }


def _deep(n: int) -> Any:
    value: Any = "x"
    for _ in range(n):
        value = {"a": [value]}
    return value


async def test_malformed_pdus_never_stop_the_transaction(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    template = await fed.forge(content={"body": "template"})
    bad = list(_malformed(template).values())
    count = await fed.a.node.events.count_events(fed.room)
    good = await fed.forge(content={"body": "after the junk"})
    assert len(bad) < 50
    answer = await fed.send([*bad, good])
    assert answer["pdus"][fed.event_id(good)] == {}, answer
    assert len(answer["pdus"]) == len(bad) + 1  # one answer each
    errors = [v for k, v in answer["pdus"].items() if k != fed.event_id(good)]
    assert all("error" in v for v in errors), answer
    # Only the good one was stored.
    assert await fed.a.node.events.count_events(fed.room) == count + 1
    assert await fed.visible_to_owner(fed.event_id(good))
    await fed.still_up(caplog, "not a valid event")


async def _hand_signed(
    http: aiohttp.ClientSession,
    fed: Fed,
    key: ServerKey,
    content: Any,
    *,
    body: bytes | None = None,
    txn_id: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """PUT /send by hand, the request signed the way Synapse signs (canonicaljson, which
    lets floats and large integers through), from ``key``'s server."""
    uri = SEND + (txn_id or f"hand{next(_txn)}")
    signed = {
        "method": "PUT",
        "uri": uri,
        "origin": key.server_name,
        "destination": fed.a_name,
        "content": content,
    }
    sig = key.signing_key.sign(canonicaljson.encode_canonical_json(signed)).signature
    header = (
        f'X-Matrix origin="{key.server_name}",destination="{fed.a_name}",'
        f'key="{key.key_id}",sig="{encode_base64(sig)}"'
    )
    data = body if body is not None else canonicaljson.encode_canonical_json(content)
    url = f"https://{fed.a.listeners['federation']}{uri}"
    headers = {"Authorization": header, "Content-Type": "application/json"}
    async with http.put(url, data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def _txn_body(fed: Fed, pdus: Sequence[Any] = (), edus: Sequence[Any] = ()) -> dict[str, Any]:
    return {
        "origin": fed.b_name,
        "origin_server_ts": int(time.time() * 1000),
        "pdus": list(pdus),
        "edus": list(edus),
    }


async def test_non_canonical_numbers_drop_only_their_pdu(
    fed: Fed, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    template = await fed.forge(content={"body": "template"})
    floats = {**template, "content": {"body": "pi", "n": 3.14}}
    big = {**template, "content": {"body": "big", "n": 2**60}}
    good = await fed.forge(content={"body": "after the numbers"})
    status, answer = await _hand_signed(
        http, fed, fed.b.node.server_key, _txn_body(fed, [floats, big, good])
    )
    assert status == 200, answer
    assert answer["pdus"][fed.event_id(good)] == {}, answer
    await fed.still_up(caplog, "not a valid event")


async def test_transaction_limits_and_shape(
    fed: Fed, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    client = fed.b.node.federation_client
    good = await fed.forge(content={"body": "never stored"})
    path = SEND + "limits"
    cases: dict[str, tuple[Any, int, str]] = {
        "51 PDUs": (_txn_body(fed, [good] * 51), 400, "M_BAD_JSON"),
        "101 EDUs": (
            _txn_body(fed, [good], [{"edu_type": "x", "content": {}}] * 101),
            400,
            "M_BAD_JSON",
        ),
        "origin of another server": (
            {**_txn_body(fed, [good]), "origin": fed.a_name},
            400,
            "M_BAD_JSON",
        ),
        "pdus not a list": ({**_txn_body(fed), "pdus": {"a": good}}, 400, "M_BAD_JSON"),
        "edus not a list": ({**_txn_body(fed, [good]), "edus": "x"}, 400, "M_BAD_JSON"),
        "not an object": ([good], 400, "M_BAD_JSON"),
    }
    for case, (body, status, errcode) in cases.items():
        with pytest.raises(RemoteError) as err:
            await client.put_json(fed.a_name, path + case.replace(" ", "_"), body)
        assert (err.value.status, err.value.errcode) == (status, errcode), case
    # Exactly at the limits is fine.
    fifty = [await fed.forge(content={"body": f"m{i}"}) for i in range(2)] + [{}] * 48
    answer = await fed.send(fifty, [{"edu_type": "m.unknown", "content": {}}] * 100)
    assert len(answer["pdus"]) == 50
    assert await fed.row(fed.event_id(good)) is None
    # Not JSON at all.
    status, answer = await _hand_signed(http, fed, fed.b.node.server_key, None, body=b"{nope")
    assert status == 400 and answer["errcode"] == "M_NOT_JSON"
    await fed.still_up(caplog, "refused: A transaction carries at most", "is not the server that")


async def test_bad_x_matrix_signature_gets_401(
    fed: Fed, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    b_key = fed.b.node.server_key
    impostor = ServerKey(b_key.server_name, generate_signing_key(b_key.key_id.split(":", 1)[1]))
    gone = ServerKey(f"127.0.0.1:{free_port()}", generate_signing_key("gone"))
    good = await fed.forge(content={"body": "in a forged request"})
    body = _txn_body(fed, [good])
    for key in (impostor, gone):
        status, answer = await _hand_signed(http, fed, key, {**body, "origin": key.server_name})
        assert (status, answer["errcode"]) == (401, "M_UNAUTHORIZED"), answer
    # A real signature, over other content than what is sent.
    other = _txn_body(fed, [])
    status, answer = await _hand_signed(
        http, fed, b_key, other, body=canonicaljson.encode_canonical_json(body)
    )
    assert (status, answer["errcode"]) == (401, "M_UNAUTHORIZED"), answer
    assert await fed.row(fed.event_id(good)) is None
    # (auth.py logs only the origin whose key it could not get.)
    await fed.still_up(caplog, f"federation request from {gone.server_name}: no key")


async def test_replayed_transaction_id_is_not_processed_again(
    fed: Fed, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    first = await fed.forge(content={"body": "first"})
    status, answer = await _hand_signed(
        http, fed, fed.b.node.server_key, _txn_body(fed, [first]), txn_id="same"
    )
    assert status == 200 and answer["pdus"] == {fed.event_id(first): {}}
    second = await fed.forge(content={"body": "second, same txnId"})
    status, again = await _hand_signed(
        http, fed, fed.b.node.server_key, _txn_body(fed, [second]), txn_id="same"
    )
    assert (status, again) == (200, answer)
    assert await fed.row(fed.event_id(second)) is None
    await fed.still_up(caplog)


async def test_concurrent_transactions_and_retries(
    fed: Fed, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Transactions racing into one room (each PDU on the same prev events: a fork),
    and a retry of a transaction still in progress, get the right answers."""
    pdus = [await fed.forge(content={"body": f"racer {i}"}) for i in range(6)]
    key = fed.b.node.server_key
    sends = [
        _hand_signed(http, fed, key, _txn_body(fed, [p]), txn_id=f"race{i}")
        for i, p in enumerate(pdus)
    ]
    retry = _txn_body(fed, [pdus[0]])
    sends += [_hand_signed(http, fed, key, retry, txn_id="race0") for _ in range(3)]
    results = await asyncio.gather(*sends)
    for i, (status, answer) in enumerate(results):
        pdu = pdus[i if i < len(pdus) else 0]
        assert (status, answer) == (200, {"pdus": {fed.event_id(pdu): {}}}), (i, answer)
    ids = {fed.event_id(p) for p in pdus}
    assert ids <= await fed.extremities()  # six forward extremities, all accepted
    page = await fed.ca.call("GET", f"/rooms/{quote(fed.room)}/messages?dir=b&limit=20")
    assert ids <= {e["event_id"] for e in page["chunk"]}
    await fed.still_up(caplog)


# -- server ACLs ----------------------------------------------------------------------


def _typing(room: str, user_id: str) -> dict[str, Any]:
    return {
        "edu_type": "m.typing",
        "content": {"room_id": room, "user_id": user_id, "typing": True},
    }


def _receipts(user_id: str, by_room: Mapping[str, str]) -> dict[str, Any]:
    content = {
        room: {"m.read": {user_id: {"event_ids": [event_id], "data": {"ts": 1}}}}
        for room, event_id in by_room.items()
    }
    return {"edu_type": "m.receipt", "content": content}


async def _receipt_of(fed: Fed, room: str, user_id: str) -> str | None:
    row = await fed.a.node.db.fetchone(
        "SELECT event_id FROM receipts WHERE room_id = ? AND user_id = ? AND receipt_type = ?",
        (room, user_id, "m.read"),
    )
    return row[0] if row is not None else None


async def _forbidden(call: Any) -> None:
    with pytest.raises(RemoteError) as err:
        await call
    assert (err.value.status, err.value.errcode) == (403, "M_FORBIDDEN"), err.value


async def test_server_acl_denies_pdus_edus_and_membership(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    ca, cb, room = fed.ca, fed.cb, fed.room
    # A second room, without an ACL, that B is also in.
    open_room = (await ca.call("POST", "/createRoom", {"room_version": "12"}))["room_id"]
    await ca.call("POST", f"/rooms/{quote(open_room)}/invite", {"user_id": cb.user_id})
    await cb.sync_until(lambda r: r.get("rooms", {}).get("invite", {}).get(open_room))
    await cb.call("POST", f"/join/{quote(open_room)}?server_name={quote(fed.a_name)}", {})
    mark_room = await ca.send(room, "read me")
    mark_open = await ca.send(open_room, "read me too")

    # Every server here is 127.0.0.1:<port>; ports are ignored, so A denies itself too,
    # which is fine: its own events are not checked against the ACL.
    await ca.call(
        "PUT",
        f"/rooms/{quote(room)}/state/m.room.server_acl",
        {"allow": ["*"], "deny": ["127.0.0.1"]},
    )
    caplog.clear()
    pdu = await fed.forge(content={"body": "denied"})
    answer = await fed.send(
        [pdu],
        [_typing(room, cb.user_id), _receipts(cb.user_id, {room: mark_room, open_room: mark_open})],
    )
    event_id = fed.event_id(pdu)
    assert "server ACL" in answer["pdus"][event_id]["error"], answer
    assert await fed.row(event_id) is None
    assert cb.user_id not in fed.a.node.typing.typers(room)
    assert await _receipt_of(fed, room, cb.user_id) is None
    assert await _receipt_of(fed, open_room, cb.user_id) == mark_open  # the other room's kept
    assert "denied by the server ACL" in caplog.text

    # The membership endpoints answer 403.
    client = fed.b.node.federation_client
    v1, v2 = "/_matrix/federation/v1", "/_matrix/federation/v2"
    r, u = quote(room), quote(cb.user_id)
    await _forbidden(client.get_json(fed.a_name, f"{v1}/make_join/{r}/{u}", query={"ver": "12"}))
    await _forbidden(client.get_json(fed.a_name, f"{v1}/make_leave/{r}/{u}"))
    await _forbidden(client.get_json(fed.a_name, f"{v1}/make_knock/{r}/{u}", query={"ver": "12"}))
    leave = await fed.forge(MEMBER, {"membership": "leave"}, state_key=cb.user_id)
    leave_id = quote(fed.event_id(leave))
    await _forbidden(client.put_json(fed.a_name, f"{v2}/send_leave/{r}/{leave_id}", leave))
    await _forbidden(client.put_json(fed.a_name, f"{v2}/send_join/{r}/{leave_id}", leave))
    await _forbidden(client.put_json(fed.a_name, f"{v1}/send_knock/{r}/{leave_id}", leave))
    invite = await fed.forge(MEMBER, {"membership": "invite"}, state_key=ca.user_id)
    await _forbidden(
        client.put_json(
            fed.a_name,
            f"{v2}/invite/{r}/{quote(fed.event_id(invite))}",
            {"event": invite, "room_version": "12", "invite_room_state": []},
        )
    )
    await _forbidden(
        client.get_json(fed.a_name, f"{v1}/state_ids/{r}", query={"event_id": mark_room})
    )
    assert (await fed.row(fed.event_id(leave))) is None

    # Allowed again: the same kinds of PDU and EDU go through.
    await ca.call("PUT", f"/rooms/{quote(room)}/state/m.room.server_acl", {"allow": ["127.0.0.*"]})
    pdu = await fed.forge(content={"body": "allowed"})
    answer = await fed.send(
        [pdu], [_typing(room, cb.user_id), _receipts(cb.user_id, {room: mark_room})]
    )
    assert answer["pdus"] == {fed.event_id(pdu): {}}, answer
    assert cb.user_id in fed.a.node.typing.typers(room)
    assert await _receipt_of(fed, room, cb.user_id) == mark_room
    await fed.still_up(caplog)


async def test_server_acl_without_ip_literals(fed: Fed, caplog: pytest.LogCaptureFixture) -> None:
    await fed.ca.call(
        "PUT",
        f"/rooms/{quote(fed.room)}/state/m.room.server_acl",
        {"allow": ["*"], "allow_ip_literals": False},
    )
    pdu = await fed.forge(content={"body": "from an IP literal"})
    answer = await fed.send([pdu])
    assert "server ACL" in answer["pdus"][fed.event_id(pdu)]["error"], answer
    assert await fed.row(fed.event_id(pdu)) is None
    assert "denied by the server ACL" in caplog.text
    # A is still up: its owner still sends and reads.
    sent = await fed.ca.send(fed.room, "still here")
    assert await fed.visible_to_owner(sent)
