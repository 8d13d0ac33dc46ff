"""Issue #4, "what it must show" 3: messages sent while the other server is down arrive,
all of them, in order, once it is back; both ways between Croft and Synapse.

Spec: content/server-server-api.md "Transactions" (the sender retries until the
receiver answers 200), "PDUs" and "Retrieving events" -> /get_missing_events (a
receiver that gets events whose prev_events it lacks fetches the gap).

How each side catches up (seen in the servers' logs; each test logs its timings
at INFO):

- Croft stopped, Synapse sends: Synapse keeps the PDUs in memory and retries the
  PUT /send itself for about a minute (10 tries, up to max_long_retry_delay apart), so
  an outage this short ends with that request. After a longer one it backs off
  (2 s doubling, 15 s cap in tests/interop/synapse.py) and retries only for a new event
  for Croft, a signed request from Croft (``notify_remote_server_up``: e.g. the
  presence EDU sent when the owner's client syncs), or its once-a-minute sweep.
  Restarted, it has lost that queue and sends only the room's latest event: Croft
  fetches the rest with /get_missing_events. It catches up only a destination it has
  delivered a PDU to before.
- Synapse stopped, Croft sends: Croft's queue is durable (SQLite, so it survives a
  SIGKILL) and retried with backoff (2 s doubling); any transaction from the peer
  resets the backoff (``FederationSender.peer_is_back``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing

import aiohttp
import pytest

from tests.interop.croft_node import CroftProcess
from tests.interop.synapse import SynapseServer
from tests.interop.users import MatrixUser, invite_and_join, says

log = logging.getLogger(__name__)

COUNT = 50


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def pair(
    synapse: SynapseServer, croft: CroftProcess, http: aiohttp.ClientSession
) -> tuple[MatrixUser, MatrixUser, str]:
    """Alice on Croft, Bob on Synapse, and a room Alice made that both are in."""
    bob_id, bob_token, _ = await synapse.register("bob", "bob password")
    alice = MatrixUser(http, croft.client_url, croft.user_id, await croft.login())
    bob = MatrixUser(http, synapse.client_url, bob_id, bob_token)
    room = await alice.create_room(name="outages")
    await invite_and_join(alice, bob, room, croft.server_name)
    return alice, bob, room


def assert_in_order(seen: list[str], sent: list[str]) -> None:
    """Each sent message there exactly once, in the order sent."""
    wanted = set(sent)
    ours = [b for b in seen if b in wanted]
    assert ours == sent, f"lost, duplicated or out of order: {ours}"


def queued_pdus(croft: CroftProcess, destination: str) -> int:
    """PDUs in the durable outbound queue of ``croft`` for ``destination`` (read from
    its database, read-only, whether or not the process runs)."""
    uri = f"file:{croft.data_dir / 'croft.db'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM federation_outbox_pdus WHERE destination = ?", (destination,)
        ).fetchone()
    return int(row[0])


async def wait_queue_empty(croft: CroftProcess, destination: str, within: float = 30) -> None:
    """Polls until the queue for ``destination`` is empty (rows go after a 200)."""
    deadline = time.monotonic() + within
    while True:
        left = queued_pdus(croft, destination)
        if left == 0:
            return
        assert time.monotonic() < deadline, f"{left} PDUs still queued for {destination}"
        await asyncio.sleep(0.2)


def report(what: str, t0: float, up: float) -> None:
    """Logs how long delivery took (see it with ``-rA --log-level=INFO``)."""
    log.info(
        "%s: peer up after %.1f s, everything arrived %.1f s after its start",
        what,
        up,
        time.monotonic() - t0,
    )


async def test_croft_down_while_synapse_sends(
    synapse: SynapseServer, croft: CroftProcess, pair: tuple[MatrixUser, MatrixUser, str]
) -> None:
    alice, bob, room = pair
    await croft.stop()
    sent = [f"sent while Croft was down #{i}" for i in range(COUNT)]
    for body in sent:
        await bob.send(room, body)

    t0 = time.monotonic()
    await croft.start()
    up = time.monotonic() - t0
    seen = await alice.wait_bodies(room, sent)
    report(f"Croft down, Synapse sent {COUNT}", t0, up)
    assert_in_order(seen, sent)


async def test_synapse_down_while_croft_sends(
    synapse: SynapseServer, croft: CroftProcess, pair: tuple[MatrixUser, MatrixUser, str]
) -> None:
    alice, bob, room = pair
    await synapse.stop()
    sent = [f"sent while Synapse was down #{i}" for i in range(COUNT)]
    for body in sent:
        await alice.send(room, body)
    assert queued_pdus(croft, synapse.server_name) >= COUNT

    t0 = time.monotonic()
    await synapse.start()
    up = time.monotonic() - t0
    seen = await bob.wait_bodies(room, sent)
    report(f"Synapse down, Croft sent {COUNT}", t0, up)
    assert_in_order(seen, sent)
    await wait_queue_empty(croft, synapse.server_name)


async def test_croft_queue_survives_a_crash(
    synapse: SynapseServer, croft: CroftProcess, pair: tuple[MatrixUser, MatrixUser, str]
) -> None:
    """Synapse is down; Croft queues half the messages, is killed (SIGKILL) and
    restarted, queues the other half; Synapse comes back and gets all, in order."""
    alice, bob, room = pair
    await synapse.stop()
    sent = [f"queued across a crash #{i}" for i in range(COUNT)]
    for body in sent[: COUNT // 2]:
        await alice.send(room, body)
    queued = queued_pdus(croft, synapse.server_name)
    assert queued >= COUNT // 2
    await croft.restart(crash=True)
    assert queued_pdus(croft, synapse.server_name) == queued
    for body in sent[COUNT // 2 :]:
        await alice.send(room, body)

    t0 = time.monotonic()
    await synapse.start()
    up = time.monotonic() - t0
    seen = await bob.wait_bodies(room, sent)
    report(f"Croft crashed with {COUNT} queued for Synapse", t0, up)
    assert_in_order(seen, sent)
    await wait_queue_empty(croft, synapse.server_name)


async def test_synapse_restarts_holding_messages_for_croft(
    synapse: SynapseServer, croft: CroftProcess, pair: tuple[MatrixUser, MatrixUser, str]
) -> None:
    """Croft is down while Synapse sends; Synapse then restarts, losing its in-memory
    queue: it catches up by sending only the room's latest event, and Croft fetches
    the 49 before it with /get_missing_events (20 per request)."""
    alice, bob, room = pair
    # Synapse catches up only a destination it has sent a PDU to before (it keeps the
    # position of the last one delivered); Bob's join went by send_join.
    await bob.send(room, "before the outage")
    await alice.sync_until(says(room, "before the outage"))
    await croft.stop()
    sent = [f"sent before Synapse restarted #{i}" for i in range(COUNT)]
    for body in sent:
        await bob.send(room, body)
    await synapse.stop()
    await croft.start()

    t0 = time.monotonic()
    await synapse.start()
    up = time.monotonic() - t0
    seen = await alice.wait_bodies(room, sent)
    report(f"Croft down, Synapse sent {COUNT} and restarted", t0, up)
    assert_in_order(seen, sent)
