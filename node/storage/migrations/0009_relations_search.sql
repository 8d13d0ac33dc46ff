-- 0009: event relationships and full-text search, both derived from the events table
-- by triggers, so they are written in the same transaction as the event itself.
--
-- Relations: content/client-server-api/_index.md "Forming relationships between
-- events"; modules/threading.md, event_replacements.md, reference_relations.md.
-- Search: modules/search.md ("room_events": content.body of m.room.message,
-- content.name of m.room.name, content.topic and the text/plain m.topic of
-- m.room.topic).
--
-- The triggers never fail on odd content: json_type() of a path that is missing, or
-- that runs through a non-object, is NULL. Readers join back to events and drop
-- rejected, outlier and redacted rows (a redacted child breaks its relationship).

-- One row per child event with a cleartext m.relates_to carrying rel_type and
-- event_id. aggregation_key is the m.annotation key, when there is one.
CREATE TABLE event_relations (
    event_id        TEXT PRIMARY KEY,     -- the child
    relates_to_id   TEXT NOT NULL,        -- the parent
    rel_type        TEXT NOT NULL,
    aggregation_key TEXT
);
CREATE INDEX event_relations_parent ON event_relations(relates_to_id, rel_type);

CREATE TRIGGER event_relations_insert AFTER INSERT ON events
WHEN json_valid(NEW.json)
 AND json_type(NEW.json, '$.content."m.relates_to".rel_type') = 'text'
 AND json_type(NEW.json, '$.content."m.relates_to".event_id') = 'text'
BEGIN
    INSERT OR IGNORE INTO event_relations (event_id, relates_to_id, rel_type, aggregation_key)
    VALUES (
        NEW.event_id,
        json_extract(NEW.json, '$.content."m.relates_to".event_id'),
        json_extract(NEW.json, '$.content."m.relates_to".rel_type'),
        CASE WHEN json_type(NEW.json, '$.content."m.relates_to".key') = 'text'
             THEN json_extract(NEW.json, '$.content."m.relates_to".key') END
    );
END;

CREATE TRIGGER event_relations_delete AFTER DELETE ON events
BEGIN
    DELETE FROM event_relations WHERE event_id = OLD.event_id;
END;

-- Stored JSON is not rewritten today (redaction sets events.redacted_by); should it
-- ever be, the relation follows it.
CREATE TRIGGER event_relations_update AFTER UPDATE OF json ON events
BEGIN
    DELETE FROM event_relations WHERE event_id = OLD.event_id;
    INSERT OR IGNORE INTO event_relations (event_id, relates_to_id, rel_type, aggregation_key)
        SELECT NEW.event_id,
               json_extract(NEW.json, '$.content."m.relates_to".event_id'),
               json_extract(NEW.json, '$.content."m.relates_to".rel_type'),
               CASE WHEN json_type(NEW.json, '$.content."m.relates_to".key') = 'text'
                    THEN json_extract(NEW.json, '$.content."m.relates_to".key') END
        WHERE json_valid(NEW.json)
          AND json_type(NEW.json, '$.content."m.relates_to".rel_type') = 'text'
          AND json_type(NEW.json, '$.content."m.relates_to".event_id') = 'text';
END;

INSERT OR IGNORE INTO event_relations (event_id, relates_to_id, rel_type, aggregation_key)
    SELECT event_id,
           json_extract(json, '$.content."m.relates_to".event_id'),
           json_extract(json, '$.content."m.relates_to".rel_type'),
           CASE WHEN json_type(json, '$.content."m.relates_to".key') = 'text'
                THEN json_extract(json, '$.content."m.relates_to".key') END
    FROM events
    WHERE json_valid(json)
      AND json_type(json, '$.content."m.relates_to".rel_type') = 'text'
      AND json_type(json, '$.content."m.relates_to".event_id') = 'text';

-- The searchable text of an event, one row per searchable event: the external content
-- of the full-text index (rowid = events.stream_ordering). The key an event matched is
-- known from its type, so one column is enough. The text/plain m.topic is looked for in
-- the first three representations (no json_each here: SQLite 3.40's FTS5 cannot read
-- an external-content view holding a correlated table-valued function).
CREATE VIEW event_search_source AS
SELECT stream_ordering,
       CASE type
           WHEN 'm.room.message' THEN
               CASE WHEN json_type(json, '$.content.body') = 'text'
                    THEN json_extract(json, '$.content.body') END
           WHEN 'm.room.name' THEN
               CASE WHEN json_type(json, '$.content.name') = 'text'
                    THEN json_extract(json, '$.content.name') END
           ELSE
               trim(
                   coalesce(CASE WHEN json_type(json, '$.content.topic') = 'text'
                                 THEN json_extract(json, '$.content.topic') END, '')
                   || ' ' ||
                   coalesce(CASE
                       WHEN json_type(json, '$.content."m.topic"."m.text"[0].body') = 'text'
                        AND coalesce(json_extract(json, '$.content."m.topic"."m.text"[0].mimetype'),
                                     'text/plain') = 'text/plain'
                       THEN json_extract(json, '$.content."m.topic"."m.text"[0].body')
                       WHEN json_type(json, '$.content."m.topic"."m.text"[1].body') = 'text'
                        AND coalesce(json_extract(json, '$.content."m.topic"."m.text"[1].mimetype'),
                                     'text/plain') = 'text/plain'
                       THEN json_extract(json, '$.content."m.topic"."m.text"[1].body')
                       WHEN json_type(json, '$.content."m.topic"."m.text"[2].body') = 'text'
                        AND coalesce(json_extract(json, '$.content."m.topic"."m.text"[2].mimetype'),
                                     'text/plain') = 'text/plain'
                       THEN json_extract(json, '$.content."m.topic"."m.text"[2].body')
                   END, '')
               )
       END AS value
FROM events
WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic') AND json_valid(json);

-- porter: "martians" finds "martian"; remove_diacritics: "cafe" finds "café".
CREATE VIRTUAL TABLE event_search USING fts5(
    value,
    content = 'event_search_source',
    content_rowid = 'stream_ordering',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER event_search_insert AFTER INSERT ON events
WHEN NEW.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
BEGIN
    INSERT INTO event_search (rowid, value)
        SELECT stream_ordering, value FROM event_search_source
        WHERE stream_ordering = NEW.stream_ordering;
END;

-- An external-content index deletes by the values it indexed: read them from the row
-- before it goes.
CREATE TRIGGER event_search_delete BEFORE DELETE ON events
WHEN OLD.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
BEGIN
    INSERT INTO event_search (event_search, rowid, value)
        SELECT 'delete', stream_ordering, value FROM event_search_source
        WHERE stream_ordering = OLD.stream_ordering;
END;

CREATE TRIGGER event_search_update_old BEFORE UPDATE OF json ON events
WHEN OLD.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
BEGIN
    INSERT INTO event_search (event_search, rowid, value)
        SELECT 'delete', stream_ordering, value FROM event_search_source
        WHERE stream_ordering = OLD.stream_ordering;
END;

CREATE TRIGGER event_search_update_new AFTER UPDATE OF json ON events
WHEN NEW.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
BEGIN
    INSERT INTO event_search (rowid, value)
        SELECT stream_ordering, value FROM event_search_source
        WHERE stream_ordering = NEW.stream_ordering;
END;

-- Index the events stored before this migration.
INSERT INTO event_search (event_search) VALUES ('rebuild');
