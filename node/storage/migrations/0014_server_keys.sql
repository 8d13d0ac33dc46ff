-- 0014: other servers' signing keys (node/federation/keyring.py).
-- Spec: server-server-api.md "Retrieving server keys"; keys_server.yaml, keys_query.yaml.

-- The signed key documents (GET /_matrix/key/v2/server answers) as their server
-- signed them, other servers' signatures removed; served again, with our signature
-- added, by the notary endpoint /_matrix/key/v2/query.
CREATE TABLE server_key_documents (
    doc_id INTEGER PRIMARY KEY,
    server_name TEXT NOT NULL,
    document TEXT NOT NULL,            -- canonical JSON
    valid_until_ts INTEGER NOT NULL,   -- as published in the document
    fetched_ts INTEGER NOT NULL,
    fetched_from TEXT NOT NULL         -- the server itself, or the notary that vouched for it
);
CREATE INDEX server_key_documents_by_server ON server_key_documents (server_name);

-- One row per verified key ID, from the newest document that lists it.
CREATE TABLE server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,          -- unpadded Base64 ed25519 public key
    -- Until when the key may be used: for a current key the document's valid_until_ts,
    -- capped at fetched_ts + 7 days (keys_server.yaml); for an old key its expired_ts.
    valid_until_ts INTEGER NOT NULL,
    expired_ts INTEGER,                -- set for old_verify_keys, NULL for verify_keys
    doc_id INTEGER NOT NULL REFERENCES server_key_documents (doc_id),
    fetched_ts INTEGER NOT NULL,
    PRIMARY KEY (server_name, key_id)
) WITHOUT ROWID;
CREATE INDEX server_keys_by_doc ON server_keys (doc_id);
