-- 0017: peers found on the LAN by mDNS (node/discovery/registry.py). Not a spec table:
-- Croft's own trust-on-first-use store, like SSH's known_hosts.

-- One row per server name seen on the LAN. The key (key_id, fingerprint, verify_key)
-- is pinned the first time the peer proves it holds it; a later announcement of the
-- same name with another key is refused and written to lan_key_conflicts.
-- addresses: JSON list of IP addresses; state: 'alive' or 'lost' (checked by the node
-- itself, mDNS keeps stale records for minutes). Times in ms since the epoch.
CREATE TABLE lan_peers (
    server_name   TEXT PRIMARY KEY,
    addresses     TEXT NOT NULL,
    port          INTEGER NOT NULL,
    key_id        TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    verify_key    TEXT NOT NULL,
    first_seen_ts INTEGER NOT NULL,
    last_seen_ts  INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('alive', 'lost'))
);

-- Announcements refused because the name is pinned to another key.
CREATE TABLE lan_key_conflicts (
    id          INTEGER PRIMARY KEY,
    server_name TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    addresses   TEXT NOT NULL,
    seen_ts     INTEGER NOT NULL
);
CREATE INDEX lan_key_conflicts_name ON lan_key_conflicts (server_name);
