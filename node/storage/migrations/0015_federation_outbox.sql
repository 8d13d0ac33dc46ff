-- 0015: the outbound federation queue (node/federation/sender.py): the PDUs and the
-- durable EDUs still to be sent to each destination, and each destination's retry
-- state, so that nothing queued and no backoff is lost across a restart.

-- One row per (destination, event) still to be sent, in queue order (seq). The PDU
-- JSON is read from the events table at send time, never copied here.
CREATE TABLE federation_outbox_pdus (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    UNIQUE (destination, event_id)
);
CREATE INDEX federation_outbox_pdus_by_destination ON federation_outbox_pdus(destination, seq);

-- Durable EDUs (to-device messages, device list updates, receipts ...). An EDU with a
-- key replaces a queued one with the same (destination, edu_type, key).
CREATE TABLE federation_outbox_edus (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    edu_type    TEXT NOT NULL,
    edu_key     TEXT,                          -- NULL: never replaced
    content     TEXT NOT NULL                  -- the EDU content as JSON
);
CREATE INDEX federation_outbox_edus_by_destination ON federation_outbox_edus(destination, seq);
CREATE UNIQUE INDEX federation_outbox_edus_by_key
    ON federation_outbox_edus(destination, edu_type, edu_key) WHERE edu_key IS NOT NULL;

-- Backoff per destination: consecutive failures, the interval chosen after the last
-- one and when to try again (ms since the epoch). No row: healthy.
CREATE TABLE federation_destinations (
    destination       TEXT PRIMARY KEY,
    failures          INTEGER NOT NULL,
    retry_interval_ms INTEGER NOT NULL,
    retry_at_ms       INTEGER NOT NULL
);

-- One row. txn_epoch grows at every start of the sender; transaction IDs are
-- "<epoch>.<n>", so none is ever reused for a destination (receivers dedupe on
-- (origin, txnId)). server_name lets queue_pdu_sync skip our own server.
CREATE TABLE federation_sender_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    server_name TEXT NOT NULL,
    txn_epoch   INTEGER NOT NULL
);
