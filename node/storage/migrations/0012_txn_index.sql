-- 0012: find the transaction ID of an event (unsigned.transaction_id in /sync).
CREATE INDEX event_txn_ids_by_event ON event_txn_ids (event_id);
