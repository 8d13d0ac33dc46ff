-- 0004: push notifications (content/client-server-api/modules/push.md): the user's
-- push rules and changes to the server-default ones, pushers, the events that
-- notified, and unread counts per (user, room).

-- Rules the user defined. Within one (user, kind), a lower position is more important.
CREATE TABLE push_rules (
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,             -- override, content, room, sender, underride
    rule_id    TEXT NOT NULL,
    position   INTEGER NOT NULL,
    enabled    INTEGER NOT NULL DEFAULT 1,
    conditions TEXT NOT NULL DEFAULT '[]', -- JSON array (override and underride rules)
    pattern    TEXT,                      -- content rules
    actions    TEXT NOT NULL,             -- JSON array
    PRIMARY KEY (user_id, kind, rule_id)
);

-- The user's changes to server-default rules (".m.rule.*"); NULL keeps the default.
CREATE TABLE push_default_rule_changes (
    user_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    enabled INTEGER,
    actions TEXT,                         -- JSON array
    PRIMARY KEY (user_id, kind, rule_id)
);

CREATE TABLE pushers (
    user_id             TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,    -- http
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT,
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,    -- JSON object, with the gateway url
    device_id           TEXT,             -- the device whose token set it
    pushkey_ts          INTEGER NOT NULL, -- ms
    PRIMARY KEY (app_id, pushkey, user_id)
);
CREATE INDEX pushers_user ON pushers(user_id);

-- Events that notified a user (GET /notifications), keyed by the event's
-- stream_ordering: at most one notification per event and user.
CREATE TABLE push_notifications (
    user_id         TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    room_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    actions         TEXT NOT NULL,        -- JSON array
    highlight       INTEGER NOT NULL,
    ts              INTEGER NOT NULL,     -- when the notification was made (ms)
    PRIMARY KEY (user_id, stream_ordering)
);
CREATE INDEX push_notifications_room ON push_notifications(user_id, room_id, stream_ordering);

-- Unread counts of a user in a room, counted since the event read up to (the read
-- receipt; NULL and 0 until the first one).
CREATE TABLE push_unread_counts (
    user_id            TEXT NOT NULL,
    room_id            TEXT NOT NULL,
    notification_count INTEGER NOT NULL DEFAULT 0,
    highlight_count    INTEGER NOT NULL DEFAULT 0,
    since_event_id     TEXT,
    since_stream       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, room_id)
);
