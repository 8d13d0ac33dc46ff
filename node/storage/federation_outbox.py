"""The outbound federation queue (tables federation_outbox_pdus, federation_outbox_edus,
federation_destinations, federation_sender_state; migration 0015): plain functions of
the raw ``sqlite3`` connection for ``Database.write_sync`` / ``read_sync``. The queue's
logic lives in node/federation/sender.py.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


def queue_pdu_sync(conn: sqlite3.Connection, event_id: str, destinations: Iterable[str]) -> None:
    """Queue a stored event for ``destinations`` (see FederationSender.queue_pdu_sync)."""
    conn.executemany(
        "INSERT OR IGNORE INTO federation_outbox_pdus (destination, event_id)"
        " SELECT ?1, ?2 WHERE ?1 IS NOT"
        " (SELECT server_name FROM federation_sender_state WHERE id = 1)",
        [(d, event_id) for d in dict.fromkeys(destinations) if d],
    )


def start_sync(
    conn: sqlite3.Connection, server_name: str, cap: int
) -> tuple[int, list[tuple[str, int, int, int]], list[str]]:
    """Begin a new transaction-ID epoch; forget anything queued for ourselves; thin
    oversized queues. Returns (epoch, retry rows, destinations with queued items)."""
    (epoch,) = conn.execute(
        "INSERT INTO federation_sender_state (id, server_name, txn_epoch) VALUES (1, ?, 1)"
        " ON CONFLICT (id) DO UPDATE SET txn_epoch = txn_epoch + 1,"
        " server_name = excluded.server_name RETURNING txn_epoch",
        (server_name,),
    ).fetchall()[0]
    for table in ("federation_outbox_pdus", "federation_outbox_edus", "federation_destinations"):
        conn.execute(f"DELETE FROM {table} WHERE destination = ?", (server_name,))
    retry = conn.execute(
        "SELECT destination, failures, retry_interval_ms, retry_at_ms FROM federation_destinations"
    ).fetchall()
    queued = [
        r[0]
        for r in conn.execute(
            "SELECT destination FROM federation_outbox_pdus"
            " UNION SELECT destination FROM federation_outbox_edus"
        )
    ]
    for dest in queued:
        thin_sync(conn, dest, cap)
    return int(epoch), [tuple(r) for r in retry], queued


def queue_edu_sync(
    conn: sqlite3.Connection, dest: str, edu_type: str, key: str | None, content: str
) -> None:
    if key is not None:
        conn.execute(
            "DELETE FROM federation_outbox_edus"
            " WHERE destination = ? AND edu_type = ? AND edu_key = ?",
            (dest, edu_type, key),
        )
    conn.execute(
        "INSERT INTO federation_outbox_edus (destination, edu_type, edu_key, content)"
        " VALUES (?, ?, ?, ?)",
        (dest, edu_type, key, content),
    )


def next_batch_sync(
    conn: sqlite3.Connection, dest: str, max_pdus: int, max_edus: int
) -> tuple[list[int], list[int]]:
    """The rows (seq) of the oldest PDUs and durable EDUs queued for ``dest``."""
    pdus = conn.execute(
        "SELECT seq FROM federation_outbox_pdus WHERE destination = ? ORDER BY seq LIMIT ?",
        (dest, max_pdus),
    ).fetchall()
    edus = conn.execute(
        "SELECT seq FROM federation_outbox_edus WHERE destination = ? ORDER BY seq LIMIT ?",
        (dest, max_edus),
    ).fetchall()
    return [r[0] for r in pdus], [r[0] for r in edus]


def load_batch_sync(
    conn: sqlite3.Connection, pdu_seqs: list[int], edu_seqs: list[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The PDUs and durable EDUs of a batch that are still queued, in order. A PDU whose
    event row is gone (or unreadable) is skipped; its queue row goes with the batch."""
    pdus: list[dict[str, Any]] = []
    for _, event_id, raw in _rows_in(
        conn,
        "SELECT q.seq, q.event_id, e.json FROM federation_outbox_pdus q"
        " LEFT JOIN events e ON e.event_id = q.event_id WHERE q.seq IN ({}) ORDER BY q.seq",
        pdu_seqs,
    ):
        if raw is None:
            continue
        try:
            pdus.append(json.loads(raw))
        except ValueError:
            log.error("federation: stored event %s is not valid JSON; not sent", event_id)
    edus: list[dict[str, Any]] = []
    for _, edu_type, content in _rows_in(
        conn,
        "SELECT seq, edu_type, content FROM federation_outbox_edus WHERE seq IN ({}) ORDER BY seq",
        edu_seqs,
    ):
        edus.append({"edu_type": edu_type, "content": json.loads(content)})
    return pdus, edus


def _rows_in(conn: sqlite3.Connection, sql: str, seqs: list[int]) -> list[sqlite3.Row]:
    if not seqs:  # at most 100 per batch: below SQLite's limit on parameters
        return []
    return conn.execute(sql.format(",".join("?" * len(seqs))), seqs).fetchall()


def delete_sent_sync(
    conn: sqlite3.Connection, dest: str, pdu_seqs: list[int], edu_seqs: list[int], *, reset: bool
) -> None:
    conn.executemany("DELETE FROM federation_outbox_pdus WHERE seq = ?", [(s,) for s in pdu_seqs])
    conn.executemany("DELETE FROM federation_outbox_edus WHERE seq = ?", [(s,) for s in edu_seqs])
    if reset:
        conn.execute("DELETE FROM federation_destinations WHERE destination = ?", (dest,))


def record_failure_sync(conn: sqlite3.Connection, row: tuple[str, int, int, int], cap: int) -> int:
    conn.execute(
        "INSERT OR REPLACE INTO federation_destinations"
        " (destination, failures, retry_interval_ms, retry_at_ms) VALUES (?, ?, ?, ?)",
        row,
    )
    return thin_sync(conn, row[0], cap)


def thin_sync(conn: sqlite3.Connection, dest: str, cap: int) -> int:
    """Catch-up: beyond the newest ``cap`` PDUs queued for ``dest``, keep only the newest
    per room (and none whose event is gone); the others are recorded as thinned out.
    Returns how many rows were deleted."""
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM federation_outbox_pdus WHERE destination = ?", (dest,)
    ).fetchone()
    if count <= cap:
        return 0
    rows = conn.execute(
        "SELECT q.seq, e.room_id FROM federation_outbox_pdus q"
        " LEFT JOIN events e ON e.event_id = q.event_id"
        " WHERE q.destination = ? ORDER BY q.seq DESC",
        (dest,),
    ).fetchall()
    seen: set[str] = set()
    doomed: list[tuple[int]] = []
    for i, (seq, room_id) in enumerate(rows):
        if i >= cap and (room_id is None or room_id in seen):
            doomed.append((seq,))
        if room_id is not None:
            seen.add(room_id)
    # Not sent, so not delivered: the history cache keeps them until the destination
    # fetches them (migration 0020).
    conn.executemany(
        "INSERT OR IGNORE INTO federation_outbox_thinned (destination, event_id)"
        " SELECT destination, event_id FROM federation_outbox_pdus WHERE seq = ?",
        doomed,
    )
    conn.executemany("DELETE FROM federation_outbox_pdus WHERE seq = ?", doomed)
    return len(doomed)


def served_sync(conn: sqlite3.Connection, destination: str, event_ids: list[str]) -> int:
    """``destination`` was served these events (it fetched them): those the queue had
    thinned out are delivered now."""
    cur = conn.executemany(
        "DELETE FROM federation_outbox_thinned WHERE destination = ? AND event_id = ?",
        [(destination, e) for e in event_ids],
    )
    return cur.rowcount


def queued_counts_sync(conn: sqlite3.Connection, dest: str) -> tuple[int, int]:
    """How many PDUs and durable EDUs are queued for ``dest``."""
    (pdus,) = conn.execute(
        "SELECT COUNT(*) FROM federation_outbox_pdus WHERE destination = ?", (dest,)
    ).fetchone()
    (edus,) = conn.execute(
        "SELECT COUNT(*) FROM federation_outbox_edus WHERE destination = ?", (dest,)
    ).fetchone()
    return int(pdus), int(edus)
