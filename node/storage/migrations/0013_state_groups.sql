-- 0013: the room state at every event, for federation (node/storage/state.py).
--
-- A state group is one room state (a map (type, state_key) -> event ID), stored as a
-- delta over an earlier group (prev_group) or, when prev_group is NULL, in full. A
-- delta entry with an empty event_id removes that key. chain_length bounds the walk
-- from a group back to its snapshot.

CREATE TABLE state_groups (
    id           INTEGER PRIMARY KEY,
    room_id      TEXT NOT NULL,
    prev_group   INTEGER,
    chain_length INTEGER NOT NULL
);
CREATE INDEX state_groups_room ON state_groups(room_id);

CREATE TABLE state_group_entries (
    group_id  INTEGER NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (group_id, type, state_key)
) WITHOUT ROWID;

-- The state before and after each event placed in its room's DAG (not outliers).
-- For an event that is not a state event the two are the same group.
CREATE TABLE event_state_groups (
    event_id     TEXT PRIMARY KEY,
    before_group INTEGER NOT NULL,
    after_group  INTEGER NOT NULL
) WITHOUT ROWID;

-- Soft-failed events (spec "Soft failure"): stored and usable as auth and prev events,
-- but not served to clients and not forward extremities.
ALTER TABLE events ADD COLUMN soft_failed INTEGER NOT NULL DEFAULT 0;

-- The group holding each room's current state (the current_state table's map).
CREATE TABLE room_state_groups (
    room_id  TEXT PRIMARY KEY,
    group_id INTEGER NOT NULL
) WITHOUT ROWID;
