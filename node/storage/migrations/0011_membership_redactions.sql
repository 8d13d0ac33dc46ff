-- 0011: redactions applied to stored events, and rooms the user has forgotten.

-- The event that redacted a stored event. The stored JSON is kept as it arrived;
-- readers serve the redacted form (node/events/redaction.py).
ALTER TABLE events ADD COLUMN redacted_by TEXT;

-- Redactions whose target is not (yet) known here; applied when it arrives.
CREATE TABLE pending_redactions (
    redacts      TEXT NOT NULL,
    redaction_id TEXT NOT NULL,
    PRIMARY KEY (redacts, redaction_id)
);

CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
