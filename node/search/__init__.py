"""Server-side search (modules/search.md): the room_events category over an SQLite FTS5
index that triggers on events keep (migration 0009_relations_search.sql)."""
