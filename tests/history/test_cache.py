"""The partial-history cache (node/history) on real nodes on loopback: budgets and
eviction, paging back past the cache (events fetched again from the peer that has
them, at their old places), the end of the history available when no peer has it,
events waiting for a peer kept, redactions that come while an event is out,
retention and purges."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from node.history.cache import Budget
from node.history.purge import PurgeError, parse_before
from node.history.store import forget_sync
from tests.federation.nodes import Client, croft_node, owner_pair, resolver_of
from tests.interop.users import invite_and_join

MESSAGE = "m.room.message"


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Client, Client]]:
    async with owner_pair(tmp_path) as clients:
        yield clients


@pytest.fixture
async def alone(tmp_path: Path) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as http, croft_node(tmp_path, "solo") as node:
        client = Client(http, node)
        await client.login()
        yield client


def cache_of(client: Client) -> Any:
    return client.node.node.history


async def timeline_count(client: Client, room: str) -> int:
    row = await client.node.node.db.fetchone(
        "SELECT COUNT(*) FROM events WHERE room_id = ? AND state_key IS NULL AND outlier = 0",
        (room,),
    )
    return int(row[0])


async def evicted_count(client: Client, room: str, reason: str = "budget") -> int:
    row = await client.node.node.db.fetchone(
        "SELECT COUNT(*) FROM evicted_events WHERE room_id = ? AND reason = ?", (room, reason)
    )
    return int(row[0])


async def whole_history(client: Client, room: str, limit: int) -> list[dict[str, Any]]:
    """Every page of /messages back from now, newest first, until a page has no end."""
    out: list[dict[str, Any]] = []
    start = ""
    for _ in range(200):
        page = await client.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit={limit}{start}")
        out += page["chunk"]
        if "end" not in page:
            return out
        start = f"&from={quote(page['end'])}"
    raise AssertionError("the history does not end")


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"].get("body", "") for e in events if e["type"] == MESSAGE]


async def shared_room(a: Client, b: Client) -> str:
    room = await a.create_room(name="cache")
    await invite_and_join(a, b, room, a.node.node.config.server_name)
    return room


async def croft(*args: str | Client) -> tuple[int, str, str]:
    """Run the croft command (a Client stands for its node's data directory): exit
    status, stdout, stderr."""
    argv = [str(a.node.node.config.data_dir) if isinstance(a, Client) else a for a in args]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node.cli",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def queue_empty(client: Client) -> None:
    """Until the node's federation queue is empty: events still queued never leave."""
    deadline = time.monotonic() + 30
    while await client.node.node.db.fetchone("SELECT 1 FROM federation_outbox_pdus LIMIT 1"):
        assert time.monotonic() < deadline, "the federation queue never emptied"
        await asyncio.sleep(0.05)


async def send_many(client: Client, room: str, n: int, prefix: str) -> list[str]:
    return [await client.send(room, f"{prefix} {i}") for i in range(n)]


async def test_budget_keeps_a_room_within_it_and_keeps_its_state(alone: Client) -> None:
    room = await alone.create_room(name="budget", topic="kept")
    await send_many(alone, room, 60, "m")
    cache = cache_of(alone)
    cache.room_budget = Budget.of(20)

    report = await cache.sweep(every_room=True)

    assert report.evicted == 60 - 16  # down to the budget less 2 * (20 // 10)
    assert await timeline_count(alone, room) == 16
    assert await evicted_count(alone, room) == 44
    # State stays: the room still has its name and topic, and it takes new events.
    assert (await alone.state(room, "m.room.name"))["name"] == "budget"
    assert (await alone.state(room, "m.room.topic"))["topic"] == "kept"
    await alone.send(room, "after")
    # Nobody else has the room: the history available ends at the newest 16 (and the
    # one sent since), with no position to go on from, and without the state events
    # from before the gap, which would pretend the history is whole.
    page = await alone.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=100")
    assert "end" not in page
    assert bodies(page["chunk"]) == ["after"] + [f"m {i}" for i in range(59, 43, -1)]
    assert all(e["type"] == MESSAGE for e in page["chunk"])


async def test_a_sweep_under_budget_evicts_nothing(alone: Client) -> None:
    room = await alone.create_room()
    await send_many(alone, room, 10, "m")
    cache = cache_of(alone)
    cache.room_budget = Budget.of(100)
    assert (await cache.sweep(every_room=True)).evicted == 0
    assert await timeline_count(alone, room) == 10


async def test_paging_back_fetches_evicted_history_from_the_peer(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    room = await shared_room(a, b)
    sent = await send_many(a, room, 120, "r")
    await b.wait_bodies(room, [f"r {i}" for i in range(120)])
    before = await whole_history(a, room, 100)  # all of it, in the cache
    await queue_empty(a)

    cache = cache_of(a)
    cache.room_budget = Budget.of(30)
    await cache.sweep(every_room=True)
    assert await timeline_count(a, room) == 24  # the budget less 2 * (30 // 10)
    assert await evicted_count(a, room) == 120 - 24

    after = await whole_history(a, room, 25)

    assert [e["event_id"] for e in after] == [e["event_id"] for e in before]
    assert bodies(after) == [f"r {i}" for i in range(119, -1, -1)]
    assert set(sent) <= {e["event_id"] for e in after}
    assert await evicted_count(a, room) == 0
    # They went back to their old places: a page from an old token still reads on.
    assert await timeline_count(a, room) == 120


async def test_events_waiting_for_a_peer_stay_until_it_has_them(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    room = await shared_room(a, b)
    server_b = b.node.node.config.server_name
    resolver_of(a.node).blocked.add(server_b)
    await send_many(a, room, 40, "q")
    cache = cache_of(a)
    cache.room_budget = Budget.of(10)
    await cache.sweep(every_room=True)
    # Every one of them is still queued for B: none may leave.
    assert await timeline_count(a, room) >= 40

    resolver_of(a.node).blocked.discard(server_b)
    a.node.node.federation_sender.peer_is_back(server_b)
    await b.wait_bodies(room, [f"q {i}" for i in range(40)])
    await queue_empty(a)
    await cache.sweep(every_room=True)
    assert await timeline_count(a, room) <= 10


async def test_a_redaction_while_the_event_is_out_applies_when_it_comes_back(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    room = await shared_room(a, b)
    secret = await a.send(room, "secret")
    await send_many(a, room, 30, "pad")
    await b.wait_bodies(room, ["secret", "pad 29"])
    await queue_empty(a)
    cache = cache_of(a)
    cache.room_budget = Budget.of(10)
    await cache.sweep(every_room=True)
    assert await a.node.node.events.get_event(secret) is None

    await a.call("PUT", f"/rooms/{quote(room)}/redact/{quote(secret)}/x1", {"reason": "oops"})

    history = await whole_history(a, room, 50)
    found = [e for e in history if e["event_id"] == secret]
    assert len(found) == 1
    assert found[0]["content"] == {}
    assert "redacted_because" in found[0]["unsigned"]


async def test_retention_deletes_expired_events_for_good(pair: tuple[Client, Client]) -> None:
    a, b = pair
    room = await shared_room(a, b)
    await a.put_state(room, "m.room.retention", {"max_lifetime": 1_000})
    await send_many(a, room, 12, "old")
    await b.wait_bodies(room, ["old 11"])
    cache = cache_of(a)
    cache.retention = True
    await asyncio.sleep(1.1)

    expired = await cache.apply_retention()

    # The newest stays stored (new events are built on it), but is not served.
    assert expired == 11
    assert await evicted_count(a, room, "retention") == 11
    page = await a.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=50")
    assert bodies(page["chunk"]) == []
    # B still has them, but they are not fetched again.
    assert len(bodies(await whole_history(b, room, 50))) == 12
    assert bodies(await whole_history(a, room, 50)) == []
    # Without retention on, the policy is only a state event.
    assert (await a.state(room, "m.room.retention"))["max_lifetime"] == 1_000


async def test_croft_purge_before_a_date_while_the_node_runs(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    room = await shared_room(a, b)
    await a.call(
        "PUT",
        f"/directory/room/{quote('#log:' + a.node.node.config.server_name)}",
        {"room_id": room},
    )
    await send_many(a, room, 5, "early")
    await asyncio.sleep(0.05)
    cut = datetime.now(UTC).isoformat(timespec="milliseconds")
    await asyncio.sleep(0.05)
    await send_many(a, room, 5, "late")
    await b.wait_bodies(room, ["late 4"])
    await queue_empty(a)

    code, out, err = await croft(
        "purge", "--data-dir", a, "#log:" + a.node.node.config.server_name, "--before", cut
    )
    assert code == 0, err
    assert f"{room}: 5 events sent before" in out

    assert bodies(await whole_history(a, room, 3)) == [f"late {i}" for i in range(4, -1, -1)]
    assert await evicted_count(a, room, "purge") == 5
    assert len(bodies(await whole_history(b, room, 50))) == 10  # B keeps its own
    await a.send(room, "still works")
    await b.wait_bodies(room, ["still works"])


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("30d", (1_000_000 - 30 * 86400) * 1000),
        ("12h", (1_000_000 - 12 * 3600) * 1000),
        ("90m", (1_000_000 - 90 * 60) * 1000),
        ("1970-01-02T00:00:00+00:00", 86400 * 1000),
    ],
)
def test_purge_dates(text: str, want: int) -> None:
    assert parse_before(text, now=1_000_000) == want


@pytest.mark.parametrize("text", ["yesterday", "30 days", "1970-01-13T00:00:00+00:00", ""])
def test_bad_purge_dates(text: str) -> None:
    with pytest.raises(PurgeError):
        parse_before(text, now=1_000_000)


async def test_croft_purge_refuses_unknown_rooms(alone: Client) -> None:
    for room, message in [
        ("!nope:x", "no such room"),
        ("#nope:x", "no such alias"),
        ("lobby", "not a room ID"),
    ]:
        code, _, err = await croft("purge", "--data-dir", alone, room, "--before", "1d")
        assert code == 2
        assert message in err and err.startswith("croft: error:")


async def test_forgotten_history_ends_the_timeline_where_it_was_cut(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    room = await shared_room(a, b)
    await send_many(a, room, 60, "m")
    await b.wait_bodies(room, ["m 59"])
    await queue_empty(a)
    cache = cache_of(a)
    cache.room_budget = Budget.of(20)
    await cache.sweep(every_room=True)  # m 0 .. m 43 out of the cache
    await a.node.node.db.write_sync(lambda conn: forget_sync(conn, 20))  # m 0 .. m 19 gone

    # m 20 .. m 43 come back from B; m 0 .. m 19 are not asked for, and the room's
    # state events from before them are not served as if they came next.
    history = await whole_history(a, room, 25)
    assert [e["content"].get("body") for e in history] == [f"m {i}" for i in range(59, 19, -1)]
    assert await evicted_count(a, room) == 0


async def test_the_store_budget_takes_the_oldest_events_of_any_room(alone: Client) -> None:
    rooms = [await alone.create_room(name=f"r{i}") for i in range(2)]
    for i in range(150):
        await alone.send(rooms[i % 2], "x" * 400 + f" {i}")
    cache = cache_of(alone)
    used = await cache.store_bytes()
    cache.store_budget = Budget.of(used - 60_000)

    report = await cache.sweep(every_room=True)

    assert report.evicted > 0
    assert await cache.store_bytes() <= cache.store_budget.high
    # The oldest went first, from both rooms; the newest of each stayed.
    for room in rooms:
        assert await evicted_count(alone, room) > 0
        page = await alone.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=1")
        assert page["chunk"][0]["content"]["body"].endswith((" 149", " 148"))


async def test_croft_status_shows_the_cache(alone: Client) -> None:
    room = await alone.create_room()
    await send_many(alone, room, 30, "s")
    cache = cache_of(alone)
    cache.room_budget = Budget.of(10)
    await cache.sweep(every_room=True)
    code, out, _ = await croft("status", "--json", "--data-dir", alone)
    assert code == 0
    history = json.loads(out)["history"]
    assert history["timeline_events"] == 8
    assert history["evicted"] == 22
    assert 0 < history["used_bytes"] <= history["max_store_bytes"]


async def test_events_thinned_out_of_the_queue_stay_until_the_peer_fetched_them(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    room = await shared_room(a, b)
    server_b = b.node.node.config.server_name
    resolver_of(a.node).blocked.add(server_b)
    a.node.node.federation_sender.catch_up_cap = 5  # catch-up thins all but the newest 5
    await send_many(a, room, 30, "t")
    db = a.node.node.db
    deadline = time.monotonic() + 30
    while not await db.fetchone("SELECT 1 FROM federation_outbox_thinned LIMIT 1"):
        assert time.monotonic() < deadline, "the queue was never thinned"
        await asyncio.sleep(0.1)
    cache = cache_of(a)
    cache.room_budget = Budget.of(10)
    await cache.sweep(every_room=True)
    # Not sent, so not delivered: none of them may leave.
    assert await timeline_count(a, room) == 30

    resolver_of(a.node).blocked.discard(server_b)
    a.node.node.federation_sender.peer_is_back(server_b)
    # B gets the newest and fetches the rest (/get_missing_events): then they are B's.
    await b.wait_bodies(room, [f"t {i}" for i in range(30)])
    await queue_empty(a)
    assert await db.fetchone("SELECT 1 FROM federation_outbox_thinned") is None
    await cache.sweep(every_room=True)
    assert await timeline_count(a, room) <= 10


async def test_event_and_context_fetch_an_evicted_event_again(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    room = await shared_room(a, b)
    ids = await send_many(a, room, 30, "c")
    await b.wait_bodies(room, ["c 29"])
    await queue_empty(a)
    cache = cache_of(a)
    cache.room_budget = Budget.of(10)
    await cache.sweep(every_room=True)
    assert await a.node.node.events.get_event(ids[3]) is None

    got = await a.call("GET", f"/rooms/{quote(room)}/event/{quote(ids[3])}")
    assert got["content"]["body"] == "c 3"
    around = await a.call("GET", f"/rooms/{quote(room)}/context/{quote(ids[5])}?limit=2")
    assert around["event"]["content"]["body"] == "c 5"
    # Not in this room, or never known: still 404.
    await a.call("GET", f"/rooms/{quote(room)}/event/$nope", status=404)


async def test_paging_forwards_fetches_evicted_history_too(pair: tuple[Client, Client]) -> None:
    a, b = pair
    room = await shared_room(a, b)
    first = await a.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=1")
    await send_many(a, room, 50, "f")
    await b.wait_bodies(room, ["f 49"])
    await queue_empty(a)
    cache = cache_of(a)
    cache.room_budget = Budget.of(10)
    await cache.sweep(every_room=True)

    # Forwards from before the first message, 15 at a time: every one, in order.
    seen: list[str] = []
    start = first["end"]
    for _ in range(20):
        page = await a.call(
            "GET", f"/rooms/{quote(room)}/messages?dir=f&limit=15&from={quote(start)}"
        )
        seen += bodies(page["chunk"])
        if not page["chunk"] or "end" not in page:
            break
        start = page["end"]
    assert seen == [f"f {i}" for i in range(50)]


async def test_paging_forwards_reads_past_what_nobody_can_give_back(alone: Client) -> None:
    room = await alone.create_room()
    first = await alone.call("GET", f"/rooms/{quote(room)}/messages?dir=b&limit=1")
    await send_many(alone, room, 30, "g")
    cache = cache_of(alone)
    cache.room_budget = Budget.of(10)
    await cache.sweep(every_room=True)  # g 0 .. g 21 out, and nobody else has them

    page = await alone.call(
        "GET", f"/rooms/{quote(room)}/messages?dir=f&limit=50&from={quote(first['end'])}"
    )
    assert bodies(page["chunk"]) == [f"g {i}" for i in range(22, 30)]


@pytest.mark.parametrize(
    ("arriving", "high", "low"),
    [(0, 1800, 1600), (100, 1800, 1600), (150, 1700, 1400), (300, 1400, 800), (5000, 1000, 0)],
)
def test_the_margin_grows_with_what_arrives_between_sweeps(
    arriving: int, high: int, low: int
) -> None:
    assert Budget.of(2000).adapted(arriving) == Budget(high, low)
