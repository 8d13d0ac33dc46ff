-- 0007: what a user keeps on the server for their clients
-- (content/client-server-api/modules/account_data.md, tags.md, "Filtering", "Profiles"):
-- account data (global and per room; room tags are the m.tag room account data),
-- stored filters and profile fields.

-- room_id is '' for global account data. stream_id is the position on the
-- "account_data" sync stream of the last change to the row: it only grows, so
-- MAX(stream_id) is the stream's position.
CREATE TABLE account_data (
    user_id   TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    content   TEXT NOT NULL,              -- JSON object
    stream_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_stream ON account_data(stream_id);

-- Filters are numbered per user; the same definition uploaded again gets its old ID
-- (clients upload their filter at every start).
CREATE TABLE filters (
    user_id   TEXT NOT NULL,
    filter_id INTEGER NOT NULL,
    json      TEXT NOT NULL,              -- canonical JSON of the definition
    PRIMARY KEY (user_id, filter_id),
    UNIQUE (user_id, json)
);

-- One row per profile field (displayname, avatar_url, m.tz, custom fields).
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field   TEXT NOT NULL,
    value   TEXT NOT NULL,                -- JSON value
    PRIMARY KEY (user_id, field)
);
