"""Event relationships: child events, threads and the bundled aggregations.

Spec: content/client-server-api/_index.md "Forming relationships between events",
"Aggregations of child events", "Relationships API"; modules/threading.md,
event_replacements.md, reference_relations.md, event_annotations.md. The index of
relations (table event_relations) is kept by a trigger on events
(migration 0009_relations_search.sql).
"""
