"""The outbound federation sender (node/federation/sender.py) against a real SQLite
database holding real signed events and a real HTTP peer on 127.0.0.1.

Spec: content/server-server-api.md "Transactions" (50 PDUs and 100 EDUs at most)."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.events.pdu import Event
from node.events.room_versions import V12
from node.events.signing import generate_signing_key
from node.federation.keys import ServerKey
from node.federation.sender import Backoff, FederationSender
from node.rooms.builder import build_event
from node.storage.database import Database
from node.storage.events import persist_event
from tests.federation.peer import FakePeer, HttpTransport

ORIGIN = "origin.test"
PEER = "peer.test"
FAST = Backoff(initial=0.01, factor=2, maximum=0.05, jitter=0.2)
SLOW = Backoff(initial=3600, factor=2, maximum=7200, jitter=0.2)


# -- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture
def key() -> ServerKey:
    return ServerKey(ORIGIN, generate_signing_key("t1"))


@pytest.fixture
async def peer() -> AsyncIterator[FakePeer]:
    p = FakePeer()
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def urls(peer: FakePeer) -> dict[str, str]:
    return {PEER: peer.url}


@pytest.fixture
def transport(session: aiohttp.ClientSession, urls: dict[str, str]) -> HttpTransport:
    return HttpTransport(session, urls)


@pytest.fixture
async def senders() -> AsyncIterator[list[FederationSender]]:
    """Senders made by a test, closed at its end."""
    made: list[FederationSender] = []
    yield made
    for s in made:
        await s.close()


def new_sender(
    senders: list[FederationSender], db: Database, transport: Any, **kw: Any
) -> FederationSender:
    kw.setdefault("backoff", FAST)
    kw.setdefault("rng", random.Random(4))
    sender = FederationSender(db, transport, ORIGIN, **kw)
    senders.append(sender)
    return sender


class Chain:
    """Real signed events, one chain per room, stored with persist_event."""

    def __init__(self, key: ServerKey) -> None:
        self.key = key
        self.heads: dict[str, tuple[str, int]] = {}
        self.ts = 1_700_000_000_000

    def next(self, room: str, body: str) -> Event:
        head = self.heads.get(room)
        self.ts += 1
        event, _ = build_event(
            room_version=V12,
            server_key=self.key,
            room_id=room,
            sender=f"@alice:{ORIGIN}",
            event_type="m.room.message",
            content={"msgtype": "m.text", "body": body},
            state_key=None,
            prev_events=[head] if head else [],
            state={},
            origin_server_ts=self.ts,
        )
        self.heads[room] = (event.event_id, event.depth)
        return event

    async def store(
        self, db: Database, room: str, bodies: list[str], destinations: list[str]
    ) -> list[str]:
        """Store events and queue them for ``destinations`` in the same write job (as
        the room service does); returns their IDs."""
        events = [self.next(room, b) for b in bodies]

        def job(conn: sqlite3.Connection) -> None:
            for event in events:
                persist_event(conn, event)
                FederationSender.queue_pdu_sync(conn, event.event_id, destinations)

        await db.write_sync(job)
        return [e.event_id for e in events]


@pytest.fixture
def chain(key: ServerKey) -> Chain:
    return Chain(key)


ROOM_A, ROOM_B, ROOM_C = "!a:origin.test", "!b:origin.test", "!c:origin.test"


def ids_of(pdus: list[dict[str, Any]]) -> list[str]:
    return [Event.from_pdu(p, V12).event_id for p in pdus]


async def until(cond: Callable[[], bool]) -> None:
    """Poll the sender's status until ``cond`` holds (no deadline of its own: the
    pytest timeout bounds a bug)."""
    while not cond():  # noqa: ASYNC110 (the status has no event to wait on)
        await asyncio.sleep(0.005)


def idle(sender: FederationSender, dest: str = PEER) -> Callable[[], bool]:
    def check() -> bool:
        s = sender.destination_status(dest)
        return not s["worker_running"] and s["pdus_queued"] == s["edus_queued"] == 0

    return check


# -- batching and order -----------------------------------------------------------------


async def test_batches_at_most_50_pdus_and_100_edus_in_order(
    db: Database, chain: Chain, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    sender = new_sender(senders, db, transport)
    ids = await chain.store(db, ROOM_A, [str(i) for i in range(120)], [PEER])
    for i in range(150):
        await sender.send_edu(PEER, "m.direct_to_device", {"message_id": str(i)})
    assert sender.destination_status(PEER)["pdus_queued"] == 120
    assert sender.destination_status(PEER)["edus_queued"] == 150

    await sender.start()
    await until(idle(sender))

    assert [(len(t.pdus), len(t.edus)) for t in peer.received] == [(50, 100), (50, 50), (20, 0)]
    assert ids_of(peer.pdus) == ids  # every PDU once, in order
    assert [e["content"]["message_id"] for e in peer.edus] == [str(i) for i in range(150)]
    assert all(e["edu_type"] == "m.direct_to_device" for e in peer.edus)
    assert len({t.txn_id for t in peer.received}) == 3
    assert all(t.origin == ORIGIN for t in peer.received)


async def test_rows_queued_during_a_send_stay_queued(
    db: Database, chain: Chain, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    later: list[str] = []

    class QueueingTransport:
        """Queues one more event while the first transaction is on the wire."""

        async def send_transaction(
            self, destination: str, txn_id: str, body: Mapping[str, Any]
        ) -> Mapping[str, Any]:
            if not later:
                later.extend(await chain.store(db, ROOM_A, ["late"], [PEER]))
                sender.wake([PEER])
            return await transport.send_transaction(destination, txn_id, body)

    sender = new_sender(senders, db, QueueingTransport())
    await sender.start()
    first = await chain.store(db, ROOM_A, ["first"], [PEER])
    sender.wake([PEER])
    await until(idle(sender))

    assert [ids_of(t.pdus) for t in peer.received] == [first, later]


async def test_a_wake_during_the_last_read_is_not_lost(
    db: Database, chain: Chain, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    raced: list[str] = []

    class Racy(FederationSender):
        async def _next_batch(self, state: Any) -> Any:
            batch = await super()._next_batch(state)
            if batch is None and not raced:  # a commit and its wake() land right now
                raced.extend(await chain.store(db, ROOM_A, ["raced"], [PEER]))
                self.wake([PEER])
            return batch

    sender = Racy(db, transport, ORIGIN, backoff=FAST)
    senders.append(sender)
    await sender.start()
    sender.wake([PEER])  # nothing queued yet: the worker finds the queue empty
    await until(lambda: not sender.destination_status(PEER)["worker_running"])
    assert raced and ids_of(peer.pdus) == raced


async def test_a_pdu_whose_event_is_gone_is_skipped(
    db: Database, chain: Chain, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    ids = await chain.store(db, ROOM_A, ["1", "2", "3"], [PEER])
    await db.write_sync(lambda c: c.execute("DELETE FROM events WHERE event_id = ?", (ids[1],)))
    sender = new_sender(senders, db, transport)
    await sender.start()
    await until(idle(sender))
    assert ids_of(peer.pdus) == [ids[0], ids[2]]


async def test_never_sends_to_our_own_server(
    db: Database, chain: Chain, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    sender = new_sender(senders, db, transport)
    # Queued before the sender ever started: start() forgets rows for ourselves.
    await chain.store(db, ROOM_A, ["before"], [ORIGIN, PEER])
    await sender.start()
    await until(idle(sender))
    ids = await chain.store(db, ROOM_A, ["after"], [ORIGIN, PEER])
    await sender.send_edu(ORIGIN, "m.direct_to_device", {"x": 1})
    await sender.send_pdu(ids[0], [ORIGIN])
    sender.wake([ORIGIN, PEER])
    await until(idle(sender))

    assert sender.destination_status(ORIGIN)["pdus_queued"] == 0
    assert sender.destination_status(ORIGIN)["edus_queued"] == 0
    assert {d for d, _ in transport.calls} == {PEER}
    assert len(peer.pdus) == 2


# -- EDUs ---------------------------------------------------------------------------------


async def test_edus_with_a_key_replace_the_queued_one(
    db: Database, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    sender = new_sender(senders, db, transport)
    typing = {"room_id": ROOM_A, "user_id": f"@alice:{ORIGIN}"}
    await sender.send_edu(PEER, "m.typing", {**typing, "typing": True}, key=ROOM_A, durable=False)
    await sender.send_edu(PEER, "m.receipt", {"r": 1}, key=f"{ROOM_A} @alice")
    await sender.send_edu(PEER, "m.direct_to_device", {"message_id": "m1"})
    await sender.send_edu(PEER, "m.typing", {**typing, "typing": False}, key=ROOM_A, durable=False)
    await sender.send_edu(PEER, "m.receipt", {"r": 2}, key=f"{ROOM_A} @alice")
    await sender.send_edu(PEER, "m.receipt", {"r": 3}, key=f"{ROOM_B} @alice")
    await sender.send_edu(PEER, "m.direct_to_device", {"message_id": "m2"})
    status = sender.destination_status(PEER)
    assert (status["edus_queued"], status["edus_in_memory"]) == (4, 1)  # typing not on disk

    await sender.start()
    await until(lambda: not sender.destination_status(PEER)["worker_running"])

    assert [(e["edu_type"], e["content"]) for e in peer.edus] == [
        ("m.typing", {**typing, "typing": False}),  # in memory: first, newest only
        ("m.direct_to_device", {"message_id": "m1"}),
        ("m.receipt", {"r": 2}),  # replaced: at the place of the newer one
        ("m.receipt", {"r": 3}),
        ("m.direct_to_device", {"message_id": "m2"}),
    ]
    assert sender.destination_status(PEER)["edus_in_memory"] == 0


# -- durability -----------------------------------------------------------------------------


async def test_queue_backoff_and_txn_ids_survive_a_restart_of_sender_and_database(
    tmp_path: Path, chain: Chain, session: aiohttp.ClientSession, senders: list
) -> None:
    path = tmp_path / "restart.db"
    peer = FakePeer()
    urls = {PEER: await peer.start()}
    transport = HttpTransport(session, urls)
    db = await Database.open(path)
    try:
        # Run 1: one transaction goes through, then the peer goes down.
        sender = new_sender(senders, db, transport, backoff=SLOW)
        await sender.start()
        first = await chain.store(db, ROOM_A, ["delivered"], [PEER])
        sender.wake([PEER])
        await until(idle(sender))
        await peer.stop()  # the port is closed
        queued = await chain.store(db, ROOM_A, [str(i) for i in range(60)], [PEER])
        sender.wake([PEER])
        await sender.send_edu(PEER, "m.direct_to_device", {"message_id": "kept"})
        await until(lambda: sender.destination_status(PEER)["failures"] == 1)
        before = sender.destination_status(PEER)
        await sender.close()
    finally:
        await db.close()
    run1_txns = {txn for _, txn in transport.calls}
    transport.calls.clear()

    db = await Database.open(path)
    try:
        urls[PEER] = await peer.start()  # back, on a new port
        sender = new_sender(senders, db, transport, backoff=SLOW)
        await sender.start()
        status = sender.destination_status(PEER)
        # The backoff was stored: no retry for about an hour...
        assert status["failures"] == 1
        assert status["retry_at"] == pytest.approx(before["retry_at"], abs=0.002)
        assert (status["pdus_queued"], status["edus_queued"]) == (60, 1)
        await asyncio.sleep(0.05)
        assert transport.calls == []
        # ...unless the peer is seen again.
        sender.peer_is_back(PEER)
        await until(idle(sender))
        assert sender.destination_status(PEER)["failures"] == 0
    finally:
        await sender.close()
        await db.close()
        await peer.stop()

    assert ids_of(peer.pdus) == first + queued  # a reused txnId would be swallowed
    assert [e["content"] for e in peer.edus] == [{"message_id": "kept"}]
    assert not run1_txns & {txn for _, txn in transport.calls}


async def test_close_while_a_send_is_in_flight_loses_nothing(
    db: Database, chain: Chain, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    peer.hang = True
    sender = new_sender(senders, db, transport)
    await sender.start()
    ids = await chain.store(db, ROOM_A, ["1", "2", "3"], [PEER])
    sender.wake([PEER])
    await sender.send_edu(PEER, "m.direct_to_device", {"message_id": "d"})
    await peer.wait_for(lambda p: len(p.attempts) == 1)
    await sender.close()
    status = sender.destination_status(PEER)
    assert (status["pdus_queued"], status["edus_queued"]) == (3, 1)
    assert not status["worker_running"]

    peer.hang = False
    again = new_sender(senders, db, transport)
    await again.start()
    await until(idle(again))
    assert ids_of(peer.pdus) == ids
    assert [e["content"] for e in peer.edus] == [{"message_id": "d"}]


# -- failures and backoff ------------------------------------------------------------------


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    policy = Backoff(initial=2, factor=2, maximum=3600, jitter=0.2)
    rng = random.Random(1)
    for failures, base in [(1, 2), (2, 4), (3, 8), (10, 1024), (12, 3600), (500, 3600)]:
        draws = [policy.interval(failures, rng) for _ in range(50)]
        assert all(base * 0.8 <= d <= base * 1.2 for d in draws)
        assert len(set(draws)) == 50  # jittered, not one value
    assert policy.longest == 3600 * 1.2


async def test_500_retries_the_same_transaction_with_growing_backoff(
    db: Database, chain: Chain, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    policy = Backoff(initial=0.01, factor=2, maximum=0.04, jitter=0.5)
    observed: list[float] = []

    class Observing:
        async def send_transaction(
            self, destination: str, txn_id: str, body: Mapping[str, Any]
        ) -> Mapping[str, Any]:
            observed.append(sender.destination_status(destination)["retry_interval"])
            return await transport.send_transaction(destination, txn_id, body)

    peer.fail_status = 500
    sender = new_sender(senders, db, Observing(), backoff=policy, rng=random.Random(7))
    await sender.start()
    ids = await chain.store(db, ROOM_A, ["x"], [PEER])
    sender.wake([PEER])
    await peer.wait_for(lambda p: len(p.attempts) >= 6)
    peer.fail_status = None
    await until(idle(sender))

    # Interval before attempt n+1 follows failure n: 0.01, 0.02, 0.04, then the cap.
    for interval, base in zip(observed[1:6], [0.01, 0.02, 0.04, 0.04, 0.04], strict=True):
        assert base * 0.5 <= interval <= base * 1.5
    assert len(set(observed[1:6])) == 5  # jitter
    assert len({txn for txn, _ in peer.attempts}) == 1  # retried as the same transaction
    assert ids_of(peer.pdus) == ids
    status = sender.destination_status(PEER)
    assert (status["failures"], status["retry_at"], status["last_error"]) == (0, None, None)
    row = await db.fetchone("SELECT COUNT(*) FROM federation_destinations")
    assert row is not None and row[0] == 0


async def test_400_drops_the_transaction(
    db: Database, chain: Chain, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    peer.fail_status, peer.fail_body = 400, {"errcode": "M_BAD_JSON", "error": "no"}
    sender = new_sender(senders, db, transport)
    await sender.start()
    await chain.store(db, ROOM_A, ["dropped"], [PEER])
    sender.wake([PEER])
    await until(idle(sender))
    assert [status for _, status in peer.attempts] == [400]
    assert sender.destination_status(PEER)["failures"] == 0

    peer.fail_status = None
    kept = await chain.store(db, ROOM_A, ["sent"], [PEER])
    sender.wake([PEER])
    await until(idle(sender))
    assert ids_of(peer.pdus) == kept
    assert peer.attempts[0][0] != peer.attempts[1][0]


async def test_a_failing_peer_waits_for_its_backoff_and_peer_is_back_resets_it(
    db: Database, chain: Chain, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    peer.fail_status, peer.fail_body = 429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 5000}
    sender = new_sender(senders, db, transport, backoff=Backoff(initial=0.01, maximum=60))
    await sender.start()
    ids = await chain.store(db, ROOM_A, ["x"], [PEER])
    sender.wake([PEER])
    await until(lambda: sender.destination_status(PEER)["failures"] == 1)
    status = sender.destination_status(PEER)
    assert status["retry_interval"] >= 5  # the peer's retry_after_ms, over our 10 ms
    assert status["pdus_queued"] == 1
    assert status["last_error"] == "HTTP 429 M_LIMIT_EXCEEDED"
    row = None
    while row is None:  # stored right after the failure
        row = await db.fetchone("SELECT failures, retry_at_ms FROM federation_destinations")
    assert (row[0], row[1]) == (1, int(status["retry_at"] * 1000))

    # New items do not cut the backoff short: no spinning.
    more = await chain.store(db, ROOM_A, ["y"], [PEER])
    sender.wake([PEER])
    await asyncio.sleep(0.1)
    assert len(peer.attempts) == 1

    peer.fail_status = None
    sender.peer_is_back(PEER)
    await until(idle(sender))
    assert ids_of(peer.pdus) == ids + more


async def test_peer_is_lost_gives_up_the_hanging_request_and_the_same_txn_is_retried(
    db: Database, chain: Chain, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    """LAN discovery lost the peer while a transaction hangs on a dead link: the request
    is given up at once (not at its timeout) and, when the peer is back, the same
    transaction (same txnId) is sent again and delivered once."""
    peer.hang = True
    sender = new_sender(senders, db, transport, backoff=Backoff(initial=30, maximum=60))
    await sender.start()
    ids = await chain.store(db, ROOM_A, ["1", "2"], [PEER])
    sender.wake([PEER])
    await peer.wait_for(lambda p: len(p.attempts) == 1)
    sender.peer_is_lost("someone-else.local")  # no state for it: nothing happens
    sender.peer_is_lost(PEER)
    await until(lambda: sender.destination_status(PEER)["failures"] == 1)
    status = sender.destination_status(PEER)
    assert status["last_error"] == f"Unreachable: {PEER}: lost on the LAN"
    assert status["pdus_queued"] == 2 and status["retry_interval"] >= 20

    peer.hang = False
    sender.peer_is_back(PEER)
    await until(idle(sender))
    assert ids_of(peer.pdus) == ids
    assert len(peer.attempts) == 2 and peer.attempts[0][0] == peer.attempts[1][0]


async def test_peer_is_back_resends_a_retry_that_hangs_at_once(
    db: Database, chain: Chain, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    """A retry sent while the link was still down hangs (its connection's
    retransmissions back off); when the peer is seen again it is sent anew at once, with
    the same txnId, instead of waiting for that connection or its timeout."""
    peer.fail_status, peer.fail_body = 502, {}
    sender = new_sender(senders, db, transport, backoff=Backoff(initial=0.05, maximum=0.05))
    await sender.start()
    ids = await chain.store(db, ROOM_A, ["1"], [PEER])
    sender.wake([PEER])
    await until(lambda: sender.destination_status(PEER)["failures"] >= 1)
    peer.hang = True
    peer.fail_status = None
    await peer.wait_for(lambda p: any(status == 0 for _, status in p.attempts))
    hung = len(peer.attempts)
    peer.hang = False
    sender.peer_is_back(PEER)
    await until(idle(sender))
    assert ids_of(peer.pdus) == ids
    assert len(peer.attempts) == hung + 1
    assert len({txn for txn, _ in peer.attempts}) == 1


async def test_a_transport_bug_does_not_kill_the_worker(
    db: Database, chain: Chain, peer: FakePeer, transport: HttpTransport, senders: list
) -> None:
    calls = 0

    class Flaky:
        async def send_transaction(
            self, destination: str, txn_id: str, body: Mapping[str, Any]
        ) -> Mapping[str, Any]:
            nonlocal calls
            calls += 1
            if calls <= 2:
                raise KeyError("bug")
            return await transport.send_transaction(destination, txn_id, body)

    sender = new_sender(senders, db, Flaky())
    await sender.start()
    ids = await chain.store(db, ROOM_A, ["x"], [PEER])
    sender.wake([PEER])
    await until(idle(sender))
    assert ids_of(peer.pdus) == ids


# -- catch-up ---------------------------------------------------------------------------------


async def test_catch_up_keeps_the_newest_pdu_per_room_beyond_the_cap(
    db: Database,
    chain: Chain,
    peer: FakePeer,
    urls: dict[str, str],
    transport: HttpTransport,
    senders: list,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await peer.stop()  # down: connections refused
    sender = new_sender(senders, db, transport, backoff=SLOW, catch_up_cap=10)
    await sender.start()
    c = await chain.store(db, ROOM_C, ["c1"], [PEER])
    b = await chain.store(db, ROOM_B, [f"b{i}" for i in range(5)], [PEER])
    a = await chain.store(db, ROOM_A, [f"a{i}" for i in range(20)], [PEER])
    with caplog.at_level(logging.WARNING, logger="node.federation.sender"):
        sender.wake([PEER])
        await until(lambda: any("get_missing_events" in r.getMessage() for r in caplog.records))
    assert sender.destination_status(PEER)["pdus_queued"] == 12

    urls[PEER] = await peer.start()
    sender.peer_is_back(PEER)
    await until(idle(sender))
    # The newest 10, and before them the newest of each room that had none of those.
    assert ids_of(peer.pdus) == [c[0], b[-1], *a[10:]]
