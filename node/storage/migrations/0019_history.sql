-- 0019: the partial-history cache (node/history/).
--
-- A timeline event (not a state event) can leave the cache: its row in events goes,
-- with its event_auth and event_state_groups rows, and one row here stays. The DAG's
-- edges (event_edges) stay, and so does its place in the DAG: the state group at it
-- (before = after for an event that is not state), so that events built on it, or
-- received on top of it, still find the state there. stream_ordering is the position
-- it had: an evicted event fetched again from a peer goes back exactly there, so
-- /messages tokens and /sync positions keep their meaning.
--
-- Its client transaction ID (event_txn_ids) goes: retries come within minutes.
--
-- reason: 'budget' (history.max_timeline_events_per_room or history.max_store_bytes;
-- fetched again from peers on demand), 'retention' (the room's m.room.retention
-- max_lifetime, when history.retention is on) or 'purge' (`croft purge`): those two
-- are never fetched again.
CREATE TABLE evicted_events (
    event_id        TEXT PRIMARY KEY,
    room_id         TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    state_group     INTEGER NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    rejected_reason TEXT,
    soft_failed     INTEGER NOT NULL DEFAULT 0,
    redacted_by     TEXT,
    reason          TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX evicted_events_room ON evicted_events(room_id, stream_ordering);

-- Where a room's history stored here now ends: past max_store_bytes even the rows
-- above of the oldest evicted events go (node/history/store.py forget_sync), with
-- their edges, and /messages ends at the newest position forgotten.
CREATE TABLE history_floors (
    room_id         TEXT PRIMARY KEY,
    stream_ordering INTEGER NOT NULL
) WITHOUT ROWID;
