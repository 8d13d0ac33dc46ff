"""Stored filters, and turning /sync's ``filter`` parameter into a SyncFilter.

Spec: content/client-server-api/_index.md "Filtering"; api/client-server/filter.yaml
(POST /user/{userId}/filter, GET /user/{userId}/filter/{filterId}: a filter ID never
starts with ``{``); sync.yaml ``filter`` (a filter ID, or a filter as inline JSON
when the value starts with ``{``). Definitions are checked by
:meth:`node.sync.filters.SyncFilter.parse`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from node.errors import MatrixError, bad_json, not_json
from node.storage.filters import FilterStore
from node.sync.filters import InvalidFilter, SyncFilter
from node.users.limits import json_size

# Parsed stored filters kept in memory: a long-polling /sync sends the same ID each time.
CACHE_SIZE = 64
# Not in the spec: a filter is a few hundred bytes; this bounds what one may store.
MAX_FILTER_BYTES = 64 * 1024


def parse_definition(definition: Any) -> SyncFilter:
    """400 M_BAD_JSON when the definition is not a valid filter."""
    try:
        return SyncFilter.parse(definition)
    except InvalidFilter as e:
        raise bad_json(f"Invalid filter: {e}") from None


def _filter_number(filter_id: str) -> int | None:
    """Filter IDs are the decimal numbers this node hands out."""
    if not filter_id.isascii() or not filter_id.isdigit() or len(filter_id) > 18:
        return None
    return int(filter_id)


class FilterService:
    def __init__(self, store: FilterStore) -> None:
        self.store = store
        self._parsed: OrderedDict[tuple[str, int], SyncFilter] = OrderedDict()

    async def create(self, user_id: str, definition: dict[str, Any]) -> str:
        """Check and store a filter; returns its ID (the earlier one for a repeat)."""
        parsed = parse_definition(definition)
        if json_size(definition) > MAX_FILTER_BYTES:
            raise MatrixError(
                413, "M_TOO_LARGE", f"Filters are limited to {MAX_FILTER_BYTES} bytes"
            )
        text = json.dumps(definition, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        number = await self.store.add(user_id, text)
        self._remember((user_id, number), parsed)
        return str(number)

    async def get_definition(self, user_id: str, filter_id: str) -> dict[str, Any] | None:
        """The stored definition, or None when the user has no such filter."""
        number = _filter_number(filter_id)
        text = await self.store.get(user_id, number) if number is not None else None
        return json.loads(text) if text is not None else None

    async def load_filter(self, user_id: str, filter_param: str) -> SyncFilter:
        """/sync's ``filter`` query parameter: inline JSON (starts with ``{``) or the ID
        of one of the user's stored filters.

        Errors: 400 M_NOT_JSON (inline, not JSON), 400 M_BAD_JSON (not a valid filter),
        400 M_INVALID_PARAM (no stored filter with that ID)."""
        if filter_param.lstrip().startswith("{"):
            try:
                definition = json.loads(filter_param)
            except (ValueError, RecursionError):
                raise not_json("The 'filter' parameter is not valid JSON") from None
            return parse_definition(definition)
        number = _filter_number(filter_param)
        key = (user_id, number if number is not None else -1)
        cached = self._parsed.get(key)
        if cached is not None:
            self._parsed.move_to_end(key)
            return cached
        text = await self.store.get(user_id, number) if number is not None else None
        if text is None:
            raise MatrixError(400, "M_INVALID_PARAM", f"No such filter: {filter_param[:40]!r}")
        parsed = parse_definition(json.loads(text))
        self._remember(key, parsed)
        return parsed

    def _remember(self, key: tuple[str, int], parsed: SyncFilter) -> None:
        self._parsed[key] = parsed
        self._parsed.move_to_end(key)
        while len(self._parsed) > CACHE_SIZE:
            self._parsed.popitem(last=False)
