-- 0020: events the outbound queue thinned out (catch-up, node/federation/sender.py)
-- before their destination had them. The destination fetches them when it needs them
-- (/get_missing_events, /backfill, /event); until it has, the history cache
-- (node/history) must not let them leave the store, or they would be lost for good
-- when this node is the only one that has them (a sensor node's readings while its
-- peers were away). A row goes when the destination is served the event.
CREATE TABLE federation_outbox_thinned (
    destination TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (destination, event_id)
) WITHOUT ROWID;
CREATE INDEX federation_outbox_thinned_event ON federation_outbox_thinned(event_id);

-- The history cache asks, per event, whether it is queued for any destination.
CREATE INDEX federation_outbox_pdus_event ON federation_outbox_pdus(event_id);
