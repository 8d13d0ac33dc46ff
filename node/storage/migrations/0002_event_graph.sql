-- 0002: the room DAG and the room state, derived from the stored events; per-device
-- transaction IDs for idempotent sends.

CREATE TABLE event_edges (
    event_id      TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges(prev_event_id);

CREATE TABLE event_auth (
    event_id TEXT NOT NULL,
    auth_id  TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_id)
);

-- The room's forward extremities: events with no known successor.
CREATE TABLE forward_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

CREATE TABLE current_state (
    room_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

CREATE TABLE event_txn_ids (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Events stored by schema 0001 get their edges from their own JSON.
INSERT OR IGNORE INTO event_edges (event_id, prev_event_id)
    SELECT e.event_id, p.value FROM events e, json_each(e.json, '$.prev_events') p
    WHERE json_valid(e.json);
INSERT OR IGNORE INTO event_auth (event_id, auth_id)
    SELECT e.event_id, a.value FROM events e, json_each(e.json, '$.auth_events') a
    WHERE json_valid(e.json);
INSERT OR IGNORE INTO forward_extremities (room_id, event_id)
    SELECT e.room_id, e.event_id FROM events e
    WHERE e.outlier = 0 AND e.rejected_reason IS NULL
      AND NOT EXISTS (SELECT 1 FROM event_edges x WHERE x.prev_event_id = e.event_id);
INSERT OR REPLACE INTO current_state (room_id, type, state_key, event_id)
    SELECT e.room_id, e.type, e.state_key, e.event_id FROM events e
    WHERE e.state_key IS NOT NULL AND e.outlier = 0 AND e.rejected_reason IS NULL
    ORDER BY e.stream_ordering;
