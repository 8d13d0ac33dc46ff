"""/sync: stream tokens, the notifier, filters and response assembly."""
