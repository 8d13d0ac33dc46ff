-- 0006: end-to-end encryption: device keys, one-time and fallback keys, cross-signing
-- keys and signatures, the device-list and to-device streams, and server-side key
-- backups. Spec: client-server-api/modules/end_to_end_encryption.md, send_to_device.md.
-- The tables are named after the feature (e2e_, to_device_); JSON columns hold the
-- objects exactly as the client uploaded them.

-- A device's identity keys (POST /keys/upload device_keys), without any signatures
-- added later through /keys/signatures/upload (those live in e2e_signatures).
CREATE TABLE e2e_device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    added_ts  INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys: claimed (and deleted) oldest upload first, hence the rowid order.
CREATE TABLE e2e_one_time_keys (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    UNIQUE (user_id, device_id, algorithm, key_id)
);
CREATE INDEX e2e_one_time_keys_claim ON e2e_one_time_keys(user_id, device_id, algorithm, id);

-- At most one fallback key per device and algorithm; `used` once it was claimed.
CREATE TABLE e2e_fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys (POST /keys/device_signing/upload); key_type is master,
-- self_signing or user_signing; public_key is the unpadded Base64 ed25519 key.
CREATE TABLE e2e_cross_signing_keys (
    user_id    TEXT NOT NULL,
    key_type   TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    added_ts   INTEGER NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through POST /keys/signatures/upload: signer_user's key
-- signer_key_id (``ed25519:...``) signed target_user's key target_key_id (a device ID
-- or a cross-signing public key).
CREATE TABLE e2e_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id  TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The device_lists stream: a row each time a user's devices or cross-signing keys
-- changed (device_id NULL for cross-signing). The AUTOINCREMENT id is the position.
CREATE TABLE e2e_device_list_changes (
    stream_id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id   TEXT NOT NULL,
    device_id TEXT,
    ts        INTEGER NOT NULL
);
CREATE INDEX e2e_device_list_changes_user ON e2e_device_list_changes(user_id, stream_id);

-- The to_device stream: messages waiting for a local device, deleted once the device
-- acknowledged them (a /sync with a later `since`). The AUTOINCREMENT id is the
-- position and is never reused, even after deletes.
CREATE TABLE to_device_inbox (
    stream_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    message_json TEXT NOT NULL,
    ts           INTEGER NOT NULL
);
CREATE INDEX to_device_inbox_device ON to_device_inbox(user_id, device_id, stream_id);

-- Messages for users on other servers, one m.direct_to_device EDU content per
-- destination and request, waiting for the federation sender.
CREATE TABLE to_device_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    edu_json    TEXT NOT NULL,
    ts          INTEGER NOT NULL
);
CREATE INDEX to_device_outbox_destination ON to_device_outbox(destination, id);

-- PUT /sendToDevice/{eventType}/{txnId} transaction IDs, per sending device and path
-- (spec: "Transaction identifiers"); old ones are pruned.
CREATE TABLE to_device_txn_ids (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    event_type TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, event_type, txn_id)
);
CREATE INDEX to_device_txn_ids_age ON to_device_txn_ids(created_ts);

-- Server-side key backup versions; a deleted version keeps its row (deleted = 1) so
-- its number is never reused and a second DELETE still succeeds.
CREATE TABLE e2e_room_keys_versions (
    user_id        TEXT NOT NULL,
    version        INTEGER NOT NULL,
    algorithm      TEXT NOT NULL,
    auth_data_json TEXT NOT NULL,
    etag           INTEGER NOT NULL DEFAULT 0,
    deleted        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE e2e_room_keys (
    user_id             TEXT NOT NULL,
    version             INTEGER NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index INTEGER NOT NULL,
    forwarded_count     INTEGER NOT NULL,
    is_verified         INTEGER NOT NULL,
    session_data_json   TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
