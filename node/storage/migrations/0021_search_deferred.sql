-- The full-text index is filled after the commit that stores an event, not inside it
-- (node/search/indexer.py): a send's durable transaction no longer pays for FTS5, whose
-- per-transaction segment write was most of its SQLite work. search_position.upto is the
-- newest stream ordering indexed; every event at or below it is in event_search, none
-- above it (except historical ones, below). Search catches the index up before it asks.
CREATE TABLE search_position (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    upto INTEGER NOT NULL
);
-- Until now the triggers indexed every event as it was stored.
INSERT INTO search_position (id, upto)
    VALUES (1, (SELECT coalesce(MAX(stream_ordering), 0) FROM events));

-- Historical (backfilled) events are stored below every position (negative stream
-- orderings), where no indexer watermark can reach: they are still indexed as they are
-- stored. Backfill is not on the path of a send.
DROP TRIGGER event_search_insert;
CREATE TRIGGER event_search_insert AFTER INSERT ON events
WHEN NEW.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
 AND NEW.stream_ordering < 0
BEGIN
    INSERT INTO event_search (rowid, value)
        SELECT stream_ordering, value FROM event_search_source
        WHERE stream_ordering = NEW.stream_ordering;
END;

-- An external-content index must only be told to delete what it indexed: an event not
-- indexed yet leaves it alone.
DROP TRIGGER event_search_delete;
CREATE TRIGGER event_search_delete BEFORE DELETE ON events
WHEN OLD.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
 AND (OLD.stream_ordering < 0
      OR OLD.stream_ordering <= (SELECT upto FROM search_position WHERE id = 1))
BEGIN
    INSERT INTO event_search (event_search, rowid, value)
        SELECT 'delete', stream_ordering, value FROM event_search_source
        WHERE stream_ordering = OLD.stream_ordering;
END;

DROP TRIGGER event_search_update_old;
CREATE TRIGGER event_search_update_old BEFORE UPDATE OF json ON events
WHEN OLD.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
 AND (OLD.stream_ordering < 0
      OR OLD.stream_ordering <= (SELECT upto FROM search_position WHERE id = 1))
BEGIN
    INSERT INTO event_search (event_search, rowid, value)
        SELECT 'delete', stream_ordering, value FROM event_search_source
        WHERE stream_ordering = OLD.stream_ordering;
END;

DROP TRIGGER event_search_update_new;
CREATE TRIGGER event_search_update_new AFTER UPDATE OF json ON events
WHEN NEW.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
 AND (NEW.stream_ordering < 0
      OR NEW.stream_ordering <= (SELECT upto FROM search_position WHERE id = 1))
BEGIN
    INSERT INTO event_search (rowid, value)
        SELECT stream_ordering, value FROM event_search_source
        WHERE stream_ordering = NEW.stream_ordering;
END;
