"""The LAN peer registry (node/discovery/registry.py) on a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.discovery.registry import ALIVE, LOST, KeyConflict, PeerRegistry, read_peers
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
    import sqlite3

    sqlite3.connect(tmp_path / "empty.db").close()
    assert read_peers(tmp_path / "empty.db") == ([], [])
