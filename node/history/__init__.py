"""The partial-history cache: per-device budgets, eviction, retention, purges, and
fetching evicted history again from peers (cache.py; its tables: store.py)."""
