-- 0008: receipts (content/client-server-api/modules/receipts.md): each user's latest
-- receipt per room, receipt type and thread. Read markers (m.fully_read) are room
-- account data (0007), not receipts.

-- thread_id is '' for an unthreaded receipt, 'main' or a thread root's event ID for a
-- threaded one. event_ordering is the receipt's event's events.stream_ordering: a
-- receipt only moves forward. stream_id is the position on the "receipts" sync stream
-- of the row's last change: it only grows, so MAX(stream_id) is the stream's position.
CREATE TABLE receipts (
    room_id        TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    receipt_type   TEXT NOT NULL,         -- m.read, m.read.private
    thread_id      TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    event_ordering INTEGER NOT NULL,
    ts             INTEGER NOT NULL,      -- ms, when the server received it
    stream_id      INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_stream ON receipts(stream_id);
