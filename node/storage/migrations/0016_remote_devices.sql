-- 0016: device lists across servers (server-server-api "Device Management",
-- "End-to-End Encryption", "Send-to-device messaging"). The code: node/federation/
-- remote_e2ee.py.

-- Users on other servers whose device lists this server keeps, because they share a
-- room with a local user. stream_id is the last m.device_list_update applied (or the
-- stream_id of the last GET /user/devices answer); stale = 1 when an update was missed
-- and the list must be fetched again before it is used.
CREATE TABLE remote_device_lists (
    user_id    TEXT PRIMARY KEY,
    stream_id  INTEGER NOT NULL,
    stale      INTEGER NOT NULL DEFAULT 0,
    updated_ts INTEGER NOT NULL
);

-- Their devices: keys_json holds the device keys as their server published them
-- (NULL for a device without keys).
CREATE TABLE remote_devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    keys_json    TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Their master and self-signing keys (key_type: master, self_signing).
CREATE TABLE remote_cross_signing_keys (
    user_id  TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- The m.device_list_update stream this server sends for each local user: the
-- stream_id of the last update made (prev_id of the next one; GET /user/devices
-- answers it).
CREATE TABLE device_list_outbound (
    user_id   TEXT PRIMARY KEY,
    stream_id INTEGER NOT NULL
);

-- How far the e2e_device_list_changes stream (0006) has been turned into outbound
-- updates. One row.
CREATE TABLE device_list_outbound_position (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
);
INSERT INTO device_list_outbound_position (id, position)
    SELECT 1, COALESCE(MAX(stream_id), 0) FROM e2e_device_list_changes;

-- m.direct_to_device message IDs already delivered, per origin server: a
-- retransmitted EDU is delivered once. Old ones are pruned.
CREATE TABLE to_device_federation_ids (
    origin      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE INDEX to_device_federation_ids_age ON to_device_federation_ids(received_ts);
