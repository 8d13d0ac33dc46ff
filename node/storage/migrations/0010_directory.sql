-- 0010: room aliases this server hosts and its published room directory.
-- Spec: content/client-server-api/_index.md "Room aliases" (api/client-server/
-- directory.yaml) and "Published room directory" (list_public_rooms.yaml).

-- Local aliases only (#localpart:this.server); an alias points at one room, a room may
-- have many aliases.
CREATE TABLE room_aliases (
    room_alias TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    creator    TEXT NOT NULL,               -- the user who created the mapping
    created_ts INTEGER NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases(room_id);

-- Rooms whose visibility in the published room directory is "public"; a room that
-- has no row is "private".
CREATE TABLE published_rooms (
    room_id      TEXT PRIMARY KEY,
    published_ts INTEGER NOT NULL
);
