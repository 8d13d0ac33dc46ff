-- 0018: the sensor queue (node/sensors/queue.py). Not a spec table: readings of the
-- configured sensor sources, and events given to `croft publish` while the node was
-- stopped, wait here until the publisher has made them room events.

-- One row per event to send. id is AUTOINCREMENT so that it is never reused: the
-- publisher sends row N with the transaction ID "sensorq-N" (node/sensors/publisher.py),
-- which makes a send after a crash between the event's commit and the row's removal
-- a no-op. room: a room ID or alias, as configured. content: the event content as a
-- JSON object. source_id: the sensor source, NULL for `croft publish` (such rows are
-- never dropped when the queue is full). created_ts: ms since the epoch.
CREATE TABLE sensor_queue (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room       TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content    TEXT NOT NULL,
    source_id  TEXT,
    created_ts INTEGER NOT NULL
);
CREATE INDEX sensor_queue_by_room ON sensor_queue (room, id);

-- The number of rows in sensor_queue, kept by triggers: the cap is checked on every
-- reading without counting the table.
CREATE TABLE sensor_queue_depth (
    one   INTEGER PRIMARY KEY CHECK (one = 1),
    depth INTEGER NOT NULL
);
INSERT INTO sensor_queue_depth (one, depth) VALUES (1, 0);

CREATE TRIGGER sensor_queue_counted_in AFTER INSERT ON sensor_queue
BEGIN
    UPDATE sensor_queue_depth SET depth = depth + 1 WHERE one = 1;
END;

CREATE TRIGGER sensor_queue_counted_out AFTER DELETE ON sensor_queue
BEGIN
    UPDATE sensor_queue_depth SET depth = depth - 1 WHERE one = 1;
END;

-- The last sequence number given to a reading of each source (the content's "seq"):
-- consecutive per source, so a gap shows readings dropped from a full queue.
CREATE TABLE sensor_seq (
    source_id TEXT PRIMARY KEY,
    last_seq  INTEGER NOT NULL
);
