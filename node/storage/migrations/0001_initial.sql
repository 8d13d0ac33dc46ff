-- 0001: the first schema: the owner's account, devices and access tokens; rooms and
-- events stored with their exact JSON.

CREATE TABLE accounts (
    user_id       TEXT PRIMARY KEY,           -- @owner:server
    password_hash TEXT NOT NULL,              -- argon2id (argon2-cffi)
    created_ts    INTEGER NOT NULL,
    deactivated   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL REFERENCES accounts(user_id),
    device_id    TEXT NOT NULL,
    display_name TEXT,
    created_ts   INTEGER NOT NULL,
    last_seen_ts INTEGER,
    last_seen_ip TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored as the SHA-256 of the token, never the token itself.
CREATE TABLE access_tokens (
    token_sha256 BLOB PRIMARY KEY,
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    created_ts   INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_device ON access_tokens(user_id, device_id);

CREATE TABLE rooms (
    room_id      TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    created_ts   INTEGER NOT NULL
);

-- stream_ordering is the order in which this server persisted events: /sync and
-- /messages tokens are built on it.
CREATE TABLE events (
    stream_ordering  INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    type             TEXT NOT NULL,
    state_key        TEXT,
    sender           TEXT NOT NULL,
    depth            INTEGER NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    received_ts      INTEGER NOT NULL,
    outlier          INTEGER NOT NULL DEFAULT 0,
    rejected_reason  TEXT,
    json             BLOB NOT NULL             -- the PDU exactly as built or received
);
CREATE INDEX events_room_stream ON events(room_id, stream_ordering);
