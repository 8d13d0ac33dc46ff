"""The LAN peer registry (node/discovery/registry.py) on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.discovery.registry import (
    ALIVE,
    LOST,
    KeyConflict,
    NothingRefused,
    PeerRegistry,
    Trusted,
    read_peers,
    trust,
)
from node.discovery.service import Announcement, key_fingerprint
from node.storage.database import Database

KEY1, KEY2 = "A" * 43, "B" * 43
A1 = Announcement("host1.local", 8448, "ed25519:a", key_fingerprint(KEY1))
EVIL = Announcement("host1.local", 8448, "ed25519:a", key_fingerprint(KEY2))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "croft.db")
    try:
        yield database
    finally:
        await database.close()


async def test_first_key_is_pinned_and_persisted(db: Database, tmp_path: Path) -> None:
    reg = PeerRegistry(db)
    await reg.load()
    assert await reg.mark_alive(A1, ("10.99.0.1",), KEY1, now_ms=1000) is True
    assert await reg.mark_alive(A1, ("10.99.0.1",), KEY1, now_ms=2000) is False
    peer = reg.get("host1.local")
    assert peer is not None
    assert (peer.state, peer.first_seen_ts, peer.last_seen_ts) == (ALIVE, 1000, 2000)
    assert peer.verify_key == KEY1
    peers, refused = read_peers(tmp_path / "croft.db")
    assert [(p.server_name, p.addresses, p.state, p.fingerprint) for p in peers] == [
        ("host1.local", ("10.99.0.1",), ALIVE, A1.fingerprint)
    ]
    assert refused == []


async def test_another_key_for_a_known_name_is_refused_and_reported(
    db: Database, tmp_path: Path
) -> None:
    reg = PeerRegistry(db)
    await reg.load()
    await reg.mark_alive(A1, ("10.99.0.1",), KEY1, now_ms=1000)
    reg.check(A1)
    with pytest.raises(KeyConflict, match="pinned"):
        reg.check(EVIL)
    with pytest.raises(KeyConflict):
        await reg.mark_alive(EVIL, ("10.99.0.9",), KEY2, now_ms=3000)
    await reg.report_conflict(EVIL, ("10.99.0.9",), now_ms=3000)
    peers, refused = read_peers(tmp_path / "croft.db")
    assert peers[0].fingerprint == A1.fingerprint  # the pin stands
    assert refused == [
        {
            "server_name": "host1.local",
            "key_id": "ed25519:a",
            "fingerprint": EVIL.fingerprint,
            "addresses": ["10.99.0.9"],
            "seen_ts": 3000,
        }
    ]


async def test_lost_and_back_and_reload(db: Database, tmp_path: Path) -> None:
    reg = PeerRegistry(db)
    await reg.load()
    assert await reg.mark_lost("host1.local") is False  # never seen
    await reg.mark_alive(A1, ("10.99.0.1",), KEY1, now_ms=1000)
    assert await reg.mark_lost("host1.local", now_ms=5000) is True
    assert await reg.mark_lost("host1.local", now_ms=6000) is False
    assert read_peers(tmp_path / "croft.db")[0][0].state == LOST
    assert await reg.mark_alive(A1, ("10.99.0.5",), KEY1, now_ms=7000) is True
    peer = reg.get("host1.local")
    assert peer is not None and peer.addresses == ("10.99.0.5",) and peer.first_seen_ts == 1000
    # A restarted node trusts the pin but has not checked the peer yet: lost.
    again = PeerRegistry(db)
    await again.load()
    reloaded = again.get("host1.local")
    assert reloaded is not None and reloaded.state == LOST
    with pytest.raises(KeyConflict):
        again.check(EVIL)
    assert read_peers(tmp_path / "croft.db")[0][0].state == LOST


def test_read_peers_of_an_unmigrated_database(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    assert read_peers(tmp_path / "empty.db") == ([], [])


# -- `croft peers trust` (registry.trust) --------------------------------------------

KEY3 = "C" * 43
EVIL2 = Announcement("host1.local", 8448, "ed25519:b", key_fingerprint(KEY3))


def raw_pin(database: Path, name: str) -> tuple[str, str, str, str, str]:
    conn = sqlite3.connect(database)
    try:
        row = conn.execute(
            "SELECT key_id, fingerprint, verify_key, addresses, state FROM lan_peers"
            " WHERE server_name = ?",
            (name,),
        ).fetchone()
        return tuple(row)  # type: ignore[return-value]
    finally:
        conn.close()


async def test_trust_pins_the_last_refused_key(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "croft.db"
    reg = PeerRegistry(db)
    await reg.load()
    await reg.mark_alive(A1, ("10.99.0.1",), KEY1, now_ms=1000)
    await reg.report_conflict(EVIL, ("10.99.0.9",), now_ms=3000)
    await reg.report_conflict(EVIL2, ("10.99.0.8",), now_ms=4000)
    # The node runs (its database is open, WAL) while the owner trusts.
    done = await asyncio.to_thread(trust, path, "host1.local")
    assert done == Trusted(
        "host1.local", EVIL2.key_id, EVIL2.fingerprint, ("10.99.0.8",), (A1.key_id, A1.fingerprint)
    )
    assert raw_pin(path, "host1.local") == (
        EVIL2.key_id,
        EVIL2.fingerprint,
        "",  # filled in at the next good check
        '["10.99.0.8"]',
        LOST,
    )
    assert read_peers(path)[1] == []  # every refusal of the name is gone
    # The running registry still holds the old pin until it reads it again.
    assert reg.pin("host1.local") == (A1.key_id, A1.fingerprint)
    assert await reg.stored_pins(["host1.local", "host9.local"]) == {
        "host1.local": (EVIL2.key_id, EVIL2.fingerprint)
    }
    # Meanwhile its writes about the old key holder do not undo the new pin.
    await reg.mark_alive(A1, ("10.99.0.1",), KEY1, now_ms=5000)
    await reg.mark_lost("host1.local", now_ms=6000)
    assert raw_pin(path, "host1.local") == (
        EVIL2.key_id,
        EVIL2.fingerprint,
        "",
        '["10.99.0.8"]',
        LOST,
    )

    peer = await reg.reload("host1.local")
    assert peer is not None and peer.state == LOST and peer.addresses == ("10.99.0.8",)
    assert reg.pin("host1.local") == (EVIL2.key_id, EVIL2.fingerprint)
    with pytest.raises(KeyConflict):
        reg.check(A1)  # the old key is refused now
    assert await reg.mark_alive(EVIL2, ("10.99.0.8",), KEY3, now_ms=7000) is True
    assert reg.get("host1.local").verify_key == KEY3  # type: ignore[union-attr]
    assert raw_pin(path, "host1.local") == (
        EVIL2.key_id,
        EVIL2.fingerprint,
        KEY3,
        '["10.99.0.8"]',
        ALIVE,
    )


async def test_trust_with_nothing_refused(db: Database, tmp_path: Path) -> None:
    reg = PeerRegistry(db)
    await reg.load()
    await reg.mark_alive(A1, ("10.99.0.1",), KEY1, now_ms=1000)
    with pytest.raises(NothingRefused, match=r"no refused announcement of host1\.local"):
        await asyncio.to_thread(trust, tmp_path / "croft.db", "host1.local")
    await reg.report_conflict(EVIL, ("10.99.0.9",), now_ms=3000)
    with pytest.raises(NothingRefused, match=r"host2\.local"):
        await asyncio.to_thread(trust, tmp_path / "croft.db", "host2.local")
    assert raw_pin(tmp_path / "croft.db", "host1.local")[:2] == (A1.key_id, A1.fingerprint)
    assert len(read_peers(tmp_path / "croft.db")[1]) == 1
    with pytest.raises(NothingRefused, match="no database"):
        trust(tmp_path / "absent.db", "host1.local")
    sqlite3.connect(tmp_path / "empty.db").close()
    with pytest.raises(NothingRefused):
        trust(tmp_path / "empty.db", "host1.local")


async def test_trust_waits_for_a_write_in_progress(db: Database, tmp_path: Path) -> None:
    reg = PeerRegistry(db)
    await reg.load()
    await reg.mark_alive(A1, ("10.99.0.1",), KEY1, now_ms=1000)
    await reg.report_conflict(EVIL, ("10.99.0.9",), now_ms=3000)
    holder = sqlite3.connect(tmp_path / "croft.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            trust(tmp_path / "croft.db", "host1.local", busy_timeout_s=0.1)
        pending = asyncio.create_task(
            asyncio.to_thread(trust, tmp_path / "croft.db", "host1.local")
        )
        await asyncio.sleep(0.3)
        assert not pending.done()
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert (await pending).key_id == EVIL.key_id
