"""SearchService: POST /search, the room_events category.

Spec: modules/search.md, api/client-server/search.yaml.

- Keys: content.body (m.room.message), content.name (m.room.name), content.topic
  (m.room.topic, with its text/plain m.topic); the key an event matches is its type's.
- Rooms: those the user is joined to, and those they left or were banned from after
  having joined, up to their leave ("including those they have left ... it won't
  include events in rooms that happened after you left"). Encrypted rooms are not
  searched. Pre-join history follows what /messages serves (history visibility is
  not applied there either).
- Order: ``rank`` (FTS5 bm25; a result's ``rank`` is its negation, so higher is
  better) or ``recent``; ``next_batch`` continues after the last result, and a
  group's ``next_batch`` continues inside that group.
- ``count`` is exact; ``highlights`` are the searched words.
- ``event_context``: events before and after each result, passing the request's
  filter, with /messages start/end tokens and, with ``include_profile``, the senders'
  display names and avatars from the member state at the result.
- ``include_state``: the state of each room in the results (current state, or the
  state at the user's leave).
- Results carry bundled aggregations ("Aggregations of child events").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.errors import MatrixError, bad_json, invalid_param
from node.events.client_format import to_client_event
from node.events.pdu import MEMBER, Event
from node.rooms.context import ContextService
from node.search.indexer import SearchIndexer
from node.search.query import Batch, InvalidSearch, parse_search_term
from node.search.store import Hit, SearchScope, SearchStore
from node.storage.events import EventStore
from node.sync.filters import EventFilter, InvalidFilter
from node.sync.service import pagination_token

KEY_TYPES = {
    "content.body": "m.room.message",
    "content.name": "m.room.name",
    "content.topic": "m.room.topic",
}
GROUP_KEYS = ("room_id", "sender")
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 50

Bundle = Callable[[Sequence[tuple[Event, dict[str, Any]]], str], Awaitable[None]]


@dataclass(frozen=True)
class ContextOptions:
    before: int = DEFAULT_CONTEXT
    after: int = DEFAULT_CONTEXT
    include_profile: bool = False


@dataclass(frozen=True)
class RoomEventsCriteria:
    """The parsed ``search_categories.room_events`` of a request."""

    search_term: str
    keys: tuple[str, ...] = tuple(KEY_TYPES)
    event_filter: EventFilter = dataclasses.field(default_factory=EventFilter)
    order_by: str = "rank"
    context: ContextOptions | None = None
    include_state: bool = False
    group_by: tuple[str, ...] = ()


def _bool(obj: Mapping[str, Any], name: str, where: str) -> bool:
    value = obj.get(name, False)
    if not isinstance(value, bool):
        raise bad_json(f"{where}.{name} must be a boolean")
    return value


def _count(obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name, DEFAULT_CONTEXT)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad_json(f"event_context.{name} must be a non-negative integer")
    return min(value, MAX_CONTEXT)


def parse_room_events(obj: Any) -> RoomEventsCriteria:
    """Check and read the room_events criteria (M_BAD_JSON for wrong types,
    M_INVALID_PARAM for values the spec does not allow)."""
    where = "search_categories.room_events"
    if not isinstance(obj, Mapping):
        raise bad_json(f"{where} must be an object")
    term = obj.get("search_term")
    if term is None:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing {where}.search_term")
    if not isinstance(term, str):
        raise bad_json(f"{where}.search_term must be a string")
    keys = obj.get("keys", list(KEY_TYPES))
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise bad_json(f"{where}.keys must be a list of strings")
    for key in keys:
        if key not in KEY_TYPES:
            raise invalid_param(f"Cannot search key {key!r}: use {', '.join(KEY_TYPES)}")
    raw_filter = obj.get("filter") or {}
    try:
        event_filter = EventFilter.parse(raw_filter, "filter")
    except InvalidFilter as e:
        raise bad_json(f"Invalid filter: {e}") from None
    order_by = obj.get("order_by", "rank")
    if order_by not in ("rank", "recent"):
        raise invalid_param("order_by must be 'rank' or 'recent'")
    context = None
    raw_context = obj.get("event_context")
    if raw_context is not None:
        if not isinstance(raw_context, Mapping):
            raise bad_json(f"{where}.event_context must be an object")
        context = ContextOptions(
            _count(raw_context, "before_limit"),
            _count(raw_context, "after_limit"),
            _bool(raw_context, "include_profile", "event_context"),
        )
    group_by: list[str] = []
    groupings = obj.get("groupings") or {}
    if not isinstance(groupings, Mapping) or not isinstance(groupings.get("group_by", []), list):
        raise bad_json(f"{where}.groupings.group_by must be a list")
    for group in groupings.get("group_by", []):
        key = group.get("key") if isinstance(group, Mapping) else None
        if key not in GROUP_KEYS:
            raise invalid_param("groupings can be by 'room_id' or 'sender'")
        if key not in group_by:
            group_by.append(key)
    return RoomEventsCriteria(
        search_term=term,
        keys=tuple(dict.fromkeys(keys)),
        event_filter=event_filter,
        order_by=order_by,
        context=context,
        include_state=_bool(obj, "include_state", where),
        group_by=tuple(group_by),
    )


class SearchService:
    def __init__(
        self,
        store: SearchStore,
        events: EventStore,
        context: ContextService,
        bundle: Bundle | None = None,
        indexer: SearchIndexer | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.context = context
        self.bundle = bundle
        self.indexer = indexer

    async def search_room_events(
        self, user_id: str, criteria: RoomEventsCriteria, next_batch: str | None
    ) -> dict[str, Any]:
        try:
            query = parse_search_term(criteria.search_term)
            batch = Batch.decode(next_batch) if next_batch is not None else None
        except InvalidSearch as e:
            raise invalid_param(str(e)) from None
        if batch is not None and batch.order_by != criteria.order_by:
            raise invalid_param("next_batch belongs to a search with another order_by")
        if query is None:
            return {"results": [], "count": 0, "highlights": []}
        if self.indexer is not None:  # every event stored before this request
            await self.indexer.catch_up()
        scope = await self._scope(user_id, criteria, batch.group if batch else None)
        limit = min(max(criteria.event_filter.limit or DEFAULT_LIMIT, 1), MAX_LIMIT)
        hits = await self.store.search(
            query.fts, scope, order_by=criteria.order_by, after=batch, limit=limit + 1
        )
        more = len(hits) > limit
        hits = hits[:limit]
        loaded = await self.events.get_events(h.event_id for h in hits)
        hits = [h for h in hits if h.event_id in loaded]
        served = [(ev, to_client_event(ev)) for ev in (loaded[h.event_id].event for h in hits)]
        if self.bundle is not None:
            await self.bundle(served, user_id)
        results = []
        for hit, (_, out) in zip(hits, served, strict=True):
            item: dict[str, Any] = {"rank": -hit.rank, "result": out}
            if criteria.context is not None:
                item["context"] = await self._context(hit, criteria, scope)
            results.append(item)
        body: dict[str, Any] = {
            "results": results,
            "count": await self.store.count(query.fts, scope),
            "highlights": list(query.highlights),
        }
        if more and hits:
            last = hits[-1]
            body["next_batch"] = Batch(
                criteria.order_by, last.rank, last.stream_ordering, scope.group
            ).encode()
        if criteria.group_by:
            body["groups"] = await self._groups(query.fts, scope, criteria, hits)
        if criteria.include_state:
            body["state"] = await self._state(scope, hits)
        return body

    async def _scope(
        self, user_id: str, criteria: RoomEventsCriteria, group: tuple[str, str] | None
    ) -> SearchScope:
        flt = criteria.event_filter
        rooms: dict[str, int | None] = {}
        left: dict[str, int] = {}
        for room_id, stored in (await self.events.get_user_memberships(user_id)).items():
            if not flt.allows_room(room_id):
                continue
            membership = stored.event.membership
            if membership == "join":
                rooms[room_id] = None
            elif membership in ("leave", "ban"):
                left[room_id] = stored.stream_ordering
        if left:
            joined_once = await self.store.rooms_joined_once(user_id, list(left))
            rooms.update({r: upto for r, upto in left.items() if r in joined_once})
        for room_id in await self.store.encrypted_rooms(list(rooms)):
            del rooms[room_id]
        types = [KEY_TYPES[k] for k in criteria.keys if flt.allows({"type": KEY_TYPES[k]})]
        return SearchScope(
            rooms=rooms,
            types=types,
            senders=flt.senders,
            not_senders=flt.not_senders,
            contains_url=flt.contains_url,
            group=group,
        )

    async def _context(
        self, hit: Hit, criteria: RoomEventsCriteria, scope: SearchScope
    ) -> dict[str, Any]:
        options = criteria.context
        assert options is not None
        around = await self.context.around(
            hit.room_id,
            hit.stream_ordering,
            before=options.before,
            after=options.after,
            event_filter=criteria.event_filter,
            upto=scope.rooms.get(hit.room_id),
        )
        out: dict[str, Any] = {
            "start": pagination_token(around.start),
            "end": pagination_token(around.end),
            "events_before": [to_client_event(s.event) for s in around.before],
            "events_after": [to_client_event(s.event) for s in around.after],
        }
        if options.include_profile:
            senders = {hit.sender} | {s.event.sender for s in (*around.before, *around.after)}
            state_ids = await self.context.state_ids_at(hit.room_id, hit.stream_ordering)
            members = await self.events.get_events(
                state_ids[(MEMBER, u)] for u in senders if (MEMBER, u) in state_ids
            )
            profiles: dict[str, Any] = {}
            for stored in members.values():
                content = stored.event.content
                profiles[str(stored.event.state_key)] = {
                    k: content[k]
                    for k in ("displayname", "avatar_url")
                    if isinstance(content.get(k), str)
                }
            out["profile_info"] = profiles
        return out

    async def _groups(
        self, fts: str, scope: SearchScope, criteria: RoomEventsCriteria, hits: list[Hit]
    ) -> dict[str, Any]:
        groups: dict[str, Any] = {}
        for key in criteria.group_by:
            by_value: dict[str, dict[str, Any]] = {}
            last: dict[str, Hit] = {}
            for hit in hits:
                value = hit.room_id if key == "room_id" else hit.sender
                if value not in by_value:
                    by_value[value] = {"results": [], "order": len(by_value) + 1}
                by_value[value]["results"].append(hit.event_id)
                last[value] = hit
            for value, group in by_value.items():
                after = Batch(
                    criteria.order_by, last[value].rank, last[value].stream_ordering, (key, value)
                )
                in_group = dataclasses.replace(scope, group=(key, value))
                more = await self.store.search(
                    fts, in_group, order_by=criteria.order_by, after=after, limit=1
                )
                if more:
                    group["next_batch"] = after.encode()
            groups[key] = by_value
        return groups

    async def _state(self, scope: SearchScope, hits: list[Hit]) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for room_id in dict.fromkeys(h.room_id for h in hits):
            upto = scope.rooms.get(room_id)
            if upto is None:
                ids = await self.events.get_current_state_ids(room_id)
            else:
                ids = await self.context.state_ids_at(room_id, upto)
            found = await self.events.get_events(ids.values())
            state[room_id] = [
                to_client_event(s.event)
                for s in sorted(found.values(), key=lambda s: s.stream_ordering)
            ]
        return state
