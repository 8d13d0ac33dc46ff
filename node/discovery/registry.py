"""The registry of LAN peers: who was seen, where, with which pinned key, alive or lost.

Trust on first use, like SSH's known_hosts: the first key a server name proves it
holds on the LAN is pinned (tables in storage/migrations/0017_peers.sql); an
announcement of that name with another key is refused and reported
(:class:`KeyConflict`, a row in ``lan_key_conflicts``, a warning in the log).
The owner accepts the key most recently refused for a name with `croft peers trust
NAME` (:func:`trust`, which works on the database file whether the node runs or not);
the pin then holds that key's ID and fingerprint, and its verify key is filled in at
the next successful check of the peer. A running node notices the change by reading
the pins again (:meth:`PeerRegistry.stored_pins`, node/discovery/lan.py).
Liveness is decided by node/discovery/lan.py; this module only records it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from node.discovery.service import Announcement
from node.storage.database import Database

log = logging.getLogger(__name__)

ALIVE, LOST = "alive", "lost"
# last_seen_ts of a live peer is written at most this often (it is kept in memory).
PERSIST_INTERVAL_MS = 30_000


class KeyConflict(Exception):
    """A known server name announced with a key other than the pinned one."""


@dataclass(frozen=True, slots=True)
class Peer:
    server_name: str
    addresses: tuple[str, ...]
    port: int
    key_id: str
    fingerprint: str
    verify_key: str
    first_seen_ts: int
    last_seen_ts: int
    state: str

    def as_json(self) -> dict[str, Any]:
        return {
            "server_name": self.server_name,
            "addresses": list(self.addresses),
            "port": self.port,
            "key_id": self.key_id,
            "fingerprint": self.fingerprint,
            "first_seen_ts": self.first_seen_ts,
            "last_seen_ts": self.last_seen_ts,
            "state": self.state,
        }


def _now_ms() -> int:
    return int(time.time() * 1000)


def _row_to_peer(row: Any) -> Peer:
    return Peer(
        row[0], tuple(json.loads(row[1])), row[2], row[3], row[4], row[5], row[6], row[7], row[8]
    )


_COLUMNS = (
    "server_name, addresses, port, key_id, fingerprint, verify_key, "
    "first_seen_ts, last_seen_ts, state"
)


class PeerRegistry:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._peers: dict[str, Peer] = {}
        self._persisted_ts: dict[str, int] = {}

    async def load(self) -> None:
        """Read the pinned peers; none is alive until the node has checked it again."""
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM lan_peers")
        self._peers = {p.server_name: replace(p, state=LOST) for p in map(_row_to_peer, rows)}
        await self._db.write_sync(lambda c: c.execute("UPDATE lan_peers SET state = ?", (LOST,)))

    def get(self, server_name: str) -> Peer | None:
        return self._peers.get(server_name)

    def peers(self) -> list[Peer]:
        return sorted(self._peers.values(), key=lambda p: p.server_name)

    def pin(self, server_name: str) -> tuple[str, str] | None:
        """The pinned (key ID, fingerprint) of ``server_name``, or None when it has none
        (the keyring's ``pins`` hook, node/federation/keyring.py)."""
        peer = self._peers.get(server_name)
        return None if peer is None else (peer.key_id, peer.fingerprint)

    async def stored_pins(self, names: list[str]) -> dict[str, tuple[str, str]]:
        """The pins of ``names`` as the database holds them now (`croft peers trust`
        may have changed them behind this registry's back)."""
        marks = ", ".join("?" * len(names))
        rows = await self._db.fetchall(
            f"SELECT server_name, key_id, fingerprint FROM lan_peers"
            f" WHERE server_name IN ({marks})",
            names,
        )
        return {r[0]: (r[1], r[2]) for r in rows}

    async def reload(self, server_name: str) -> Peer | None:
        """Read ``server_name``'s pin again from the database, as lost until checked
        with its (new) key; returns it, or None when it is no longer pinned."""
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM lan_peers WHERE server_name = ?", (server_name,)
        )
        self._persisted_ts.pop(server_name, None)
        if row is None:
            self._peers.pop(server_name, None)
            return None
        peer = replace(_row_to_peer(row), state=LOST)
        self._peers[server_name] = peer
        await self._db.write_sync(
            lambda c: c.execute(
                "UPDATE lan_peers SET state = ? WHERE server_name = ?", (LOST, server_name)
            )
        )
        log.info("discovery: %s is now pinned to %s %s", server_name, peer.key_id, peer.fingerprint)
        return peer

    def check(self, a: Announcement) -> None:
        """Raise :class:`KeyConflict` when ``a`` names a pinned peer with another key."""
        pinned = self._peers.get(a.server_name)
        if pinned is not None and (pinned.fingerprint, pinned.key_id) != (
            a.fingerprint,
            a.key_id,
        ):
            raise KeyConflict(
                f"{a.server_name} announced key {a.key_id} {a.fingerprint}, "
                f"but {pinned.key_id} {pinned.fingerprint} is pinned"
            )

    async def report_conflict(
        self, a: Announcement, addresses: tuple[str, ...], now_ms: int | None = None
    ) -> None:
        now_ms = _now_ms() if now_ms is None else now_ms
        log.warning(
            "discovery: refused %s at %s: it announced another key than the pinned one (%s %s)",
            a.server_name,
            ", ".join(addresses),
            a.key_id,
            a.fingerprint,
        )
        await self._db.write_sync(
            lambda c: c.execute(
                "INSERT INTO lan_key_conflicts (server_name, key_id, fingerprint, addresses,"
                " seen_ts) VALUES (?, ?, ?, ?, ?)",
                (a.server_name, a.key_id, a.fingerprint, json.dumps(list(addresses)), now_ms),
            )
        )

    async def mark_alive(
        self,
        a: Announcement,
        addresses: tuple[str, ...],
        verify_key: str,
        now_ms: int | None = None,
    ) -> bool:
        """Record a successful check of ``a``'s peer; pins its key when it is new, and
        fills in the verify key of a pin that has none yet (one set by `croft peers
        trust`). Returns True when the peer was not alive before. Raises
        :class:`KeyConflict`."""
        now_ms = _now_ms() if now_ms is None else now_ms
        self.check(a)
        old = self._peers.get(a.server_name)
        peer = Peer(
            a.server_name,
            addresses,
            a.port,
            a.key_id,
            a.fingerprint,
            old.verify_key if old and old.verify_key else verify_key,
            old.first_seen_ts if old else now_ms,
            now_ms,
            ALIVE,
        )
        self._peers[a.server_name] = peer
        came_alive = old is None or old.state != ALIVE
        changed = (
            came_alive
            or old is None
            or (old.addresses, old.port, old.verify_key) != (addresses, a.port, peer.verify_key)
        )
        last = self._persisted_ts.get(a.server_name, 0)
        if changed or now_ms - last >= PERSIST_INTERVAL_MS:
            self._persisted_ts[a.server_name] = now_ms
            await self._db.write_sync(lambda c: _upsert(c, peer))
        if old is None:
            log.info("discovery: pinned %s key %s %s", a.server_name, a.key_id, a.fingerprint)
        return came_alive

    async def mark_lost(self, server_name: str, now_ms: int | None = None) -> bool:
        """Returns True when the peer was alive before."""
        peer = self._peers.get(server_name)
        if peer is None or peer.state == LOST:
            return False
        peer = replace(peer, state=LOST)
        self._peers[server_name] = peer
        await self._db.write_sync(lambda c: _upsert(c, peer))
        return True


def _upsert(c: sqlite3.Connection, p: Peer) -> None:
    # Only while the row holds the same pin: `croft peers trust` may have changed it
    # behind this registry's back, and a write about the old key holder must not touch
    # the new pin. The verify key is filled in when the pin has none yet.
    c.execute(
        f"INSERT INTO lan_peers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (server_name) DO UPDATE SET addresses = excluded.addresses, "
        "port = excluded.port, last_seen_ts = excluded.last_seen_ts, state = excluded.state, "
        "verify_key = CASE WHEN lan_peers.verify_key = '' THEN excluded.verify_key "
        "ELSE lan_peers.verify_key END "
        "WHERE lan_peers.key_id = excluded.key_id AND lan_peers.fingerprint = excluded.fingerprint",
        (
            p.server_name,
            json.dumps(list(p.addresses)),
            p.port,
            p.key_id,
            p.fingerprint,
            p.verify_key,
            p.first_seen_ts,
            p.last_seen_ts,
            p.state,
        ),
    )


def read_peers(database: Path) -> tuple[list[Peer], list[dict[str, Any]]]:
    """The peers and refused announcements in a data directory's database, read-only
    (for `croft peers`, while the node runs or not)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        try:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM lan_peers ORDER BY server_name")
            peers = [_row_to_peer(r) for r in rows]
            conflicts = [
                {
                    "server_name": r[0],
                    "key_id": r[1],
                    "fingerprint": r[2],
                    "addresses": json.loads(r[3]),
                    "seen_ts": r[4],
                }
                for r in conn.execute(
                    "SELECT server_name, key_id, fingerprint, addresses, seen_ts "
                    "FROM lan_key_conflicts ORDER BY id"
                )
            ]
        except sqlite3.OperationalError:  # not migrated yet: the node never ran
            return [], []
        return peers, conflicts
    finally:
        conn.close()


class NothingRefused(Exception):
    """`croft peers trust NAME` with no refused announcement of NAME."""


@dataclass(frozen=True, slots=True)
class Trusted:
    """What :func:`trust` did: ``old`` is the pin it replaced, (key ID, fingerprint),
    or None when the name was not pinned (then only its refusals were removed: it will
    be pinned at first sight)."""

    server_name: str
    key_id: str
    fingerprint: str
    addresses: tuple[str, ...]
    old: tuple[str, str] | None


def trust(database: Path, server_name: str, busy_timeout_s: float = 10.0) -> Trusted:
    """Accept the key most recently refused for ``server_name`` (`croft peers trust`):
    the pin becomes that key (its verify key is filled in at the next good check), the
    peer's addresses those it was refused at, and every refusal of the name is removed.
    One transaction on the database file, beside a running node (WAL; a write it holds
    is waited for up to ``busy_timeout_s``). Raises :class:`NothingRefused`."""
    if not database.exists():
        raise NothingRefused(f"no refused announcement of {server_name}: no database yet")
    conn = sqlite3.connect(f"file:{database}?mode=rw", uri=True, timeout=busy_timeout_s)
    conn.isolation_level = None
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = _trust_txn(conn, server_name)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
    finally:
        conn.close()


def _trust_txn(conn: sqlite3.Connection, server_name: str) -> Trusted:
    try:
        refused = conn.execute(
            "SELECT key_id, fingerprint, addresses FROM lan_key_conflicts"
            " WHERE server_name = ? ORDER BY seen_ts DESC, id DESC LIMIT 1",
            (server_name,),
        ).fetchone()
    except sqlite3.OperationalError:  # not migrated yet: the node never ran
        refused = None
    if refused is None:
        raise NothingRefused(f"no refused announcement of {server_name}")
    key_id, fingerprint, addresses = refused
    old = conn.execute(
        "SELECT key_id, fingerprint FROM lan_peers WHERE server_name = ?", (server_name,)
    ).fetchone()
    conn.execute(
        "UPDATE lan_peers SET key_id = ?, fingerprint = ?, verify_key = '', addresses = ?,"
        " state = ? WHERE server_name = ?",
        (key_id, fingerprint, addresses, LOST, server_name),
    )
    conn.execute("DELETE FROM lan_key_conflicts WHERE server_name = ?", (server_name,))
    return Trusted(
        server_name,
        key_id,
        fingerprint,
        tuple(json.loads(addresses)),
        None if old is None else (old[0], old[1]),
    )
