"""RelationsService: child events, the threads of a room, bundled aggregations, and
the checks on a new event's relation.

Spec: content/client-server-api/_index.md "Relationships API" (api/client-server/
relations.yaml), modules/threading.md "Querying threads in a room" (threads_list.yaml)
and "Validation of m.thread relationships", event_annotations.md "Avoiding duplicate
annotations", "Aggregations of child events" (the endpoints that bundle call
:meth:`RelationsService.bundle`). Events of ignored users (modules/ignore_users.md) are
left out of every answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.errors import MatrixError
from node.events.client_format import to_client_event
from node.events.pdu import Event
from node.events.redaction import redact
from node.relations.aggregations import (
    ANNOTATION,
    RECURSION_DEPTH,
    THREAD,
    bundled_relations,
    can_be_replaced,
    relates_to,
    thread_aggregation,
)
from node.relations.store import RelationsStore
from node.storage.events import EventStore, StoredEvent

# Who a user ignores: the user IDs in their m.ignored_user_list account data.
IgnoredUsers = Callable[[str], Awaitable[frozenset[str]]]
# (the event, the dict about to be served for it): bundle() adds unsigned.m.relations.
Served = tuple[Event, dict[str, Any]]

IGNORED_USER_LIST = "m.ignored_user_list"


async def _nobody(user_id: str) -> frozenset[str]:
    return frozenset()


def ignored_users_from(get_account_data: Callable[[str, str], Awaitable[Any]]) -> IgnoredUsers:
    """Read m.ignored_user_list through ``get_account_data(user_id, type)``."""

    async def ignored(user_id: str) -> frozenset[str]:
        content = await get_account_data(user_id, IGNORED_USER_LIST)
        users = content.get("ignored_users") if isinstance(content, Mapping) else None
        if not isinstance(users, dict):
            return frozenset()
        return frozenset(u for u in users if isinstance(u, str))

    return ignored


@dataclass
class ChildrenPage:
    events: list[StoredEvent]
    # Position to continue from (None: no more results).
    next_position: int | None


@dataclass
class ThreadsPage:
    roots: list[StoredEvent]
    next_position: int | None


class RelationsService:
    def __init__(
        self, store: RelationsStore, events: EventStore, ignored_users: IgnoredUsers | None = None
    ) -> None:
        self.store = store
        self.events = events
        self.ignored_users = ignored_users or _nobody

    # -- GET /relations --------------------------------------------------------------------

    async def children(
        self,
        user_id: str,
        room_id: str,
        parent_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        from_pos: int | None,
        to_pos: int | None,
        direction: str,
        limit: int,
        recurse: bool,
    ) -> ChildrenPage:
        """One page of the children of a parent the caller may see: backwards from
        ``from_pos`` (``dir=b``, newest first) or forwards after it (``dir=f``)."""
        backwards = direction == "b"
        rows = await self.store.children(
            room_id,
            parent_id,
            rel_type=rel_type,
            event_type=event_type,
            after=to_pos if backwards else from_pos,
            upto=from_pos if backwards else to_pos,
            newest_first=backwards,
            limit=limit + 1,
            depth=RECURSION_DEPTH if recurse else 1,
            ignored=await self.ignored_users(user_id),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        found = await self.events.get_events(eid for eid, _ in rows)
        events = [found[eid] for eid, _ in rows if eid in found]
        next_position = None
        if more and rows:
            last = rows[-1][1]
            next_position = last - 1 if backwards else last
        return ChildrenPage(events, next_position)

    # -- GET /threads ----------------------------------------------------------------------

    async def threads(
        self,
        user_id: str,
        room_id: str,
        *,
        participated_only: bool,
        from_pos: int | None,
        limit: int,
    ) -> ThreadsPage:
        """Thread roots by their latest reply, newest first; a root sent by an ignored
        user is served redacted (threads_list.yaml)."""
        ignored = await self.ignored_users(user_id)
        rows = await self.store.threads(
            room_id,
            user_id=user_id,
            participated_only=participated_only,
            upto=from_pos,
            limit=limit + 1,
            ignored=ignored,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        found = await self.events.get_events(r.root_id for r in rows)
        roots = []
        for row in rows:
            stored = found.get(row.root_id)
            if stored is None:
                continue
            if stored.event.sender in ignored:
                raw = redact(dict(stored.event.raw), stored.event.room_version)
                stored = StoredEvent(
                    Event(stored.event.event_id, stored.event.room_version, raw),
                    stored.stream_ordering,
                )
            roots.append(stored)
        next_position = rows[-1].latest_ordering - 1 if more and rows else None
        return ThreadsPage(roots, next_position)

    # -- bundled aggregations ----------------------------------------------------------------

    async def bundle(self, served: Sequence[Served], user_id: str, upto: int | None = None) -> None:
        """Add ``unsigned["m.relations"]`` to each served event that has children to
        aggregate. State events get none; an event whose served form has no
        ``unsigned`` (an ``event_fields`` filter left it out) is left alone.
        ``upto``: aggregate only children up to this stream position (the last one a
        reader who left the room may see; None for no bound)."""
        await self._bundle(served, user_id, nested=False, upto=upto)

    async def _bundle(
        self, served: Sequence[Served], user_id: str, *, nested: bool, upto: int | None
    ) -> None:
        parents = [
            (ev, out)
            for ev, out in served
            if not ev.is_state and isinstance(out.get("unsigned"), dict)
        ]
        if not parents:
            return
        ids = list(dict.fromkeys(ev.event_id for ev, _ in parents))
        ignored = await self.ignored_users(user_id)
        threads = await self.store.thread_summaries(ids, user_id, ignored, upto)
        edits = await self.store.latest_edits(ids, ignored, upto)
        references = await self.store.references(ids, ignored, upto)
        wanted = [t.latest_event_id for t in threads.values()] + list(edits.values())
        loaded = await self.events.get_events(wanted) if wanted else {}
        latest_served: dict[tuple[str, bool], dict[str, Any]] = {}
        inner: list[Served] = []
        for ev, out in parents:
            with_room = "room_id" in out
            summary = threads.get(ev.event_id)
            if summary is not None and summary.latest_event_id in loaded:
                key = (summary.latest_event_id, with_room)
                if key not in latest_served:
                    latest = loaded[summary.latest_event_id].event
                    latest_served[key] = to_client_event(latest, include_room_id=with_room)
                    inner.append((latest, latest_served[key]))
        if inner and not nested:
            # The latest thread event carries its own aggregations (its edits); a
            # thread cannot nest, so one level is all there is (threading.md).
            await self._bundle(inner, user_id, nested=True, upto=upto)
        for ev, out in parents:
            with_room = "room_id" in out
            thread = None
            summary = threads.get(ev.event_id)
            if summary is not None and (summary.latest_event_id, with_room) in latest_served:
                thread = thread_aggregation(
                    summary,
                    latest_served[(summary.latest_event_id, with_room)],
                    root_sender=ev.sender,
                    user_id=user_id,
                )
            replace = None
            edit_id = edits.get(ev.event_id)
            if edit_id in loaded and can_be_replaced(ev.raw):
                replace = to_client_event(loaded[edit_id].event, include_room_id=with_room)
            relations = bundled_relations(
                thread=thread, replace=replace, references=references.get(ev.event_id, ())
            )
            if relations:
                out["unsigned"]["m.relations"] = relations

    # -- checks on sending -------------------------------------------------------------------

    async def check_new_event(
        self, room_id: str, sender: str, event_type: str, content: Mapping[str, Any]
    ) -> None:
        """Refuse a relation the spec says the server should refuse:

        - a thread off an event that itself has a rel_type (threading.md "Validation
          of m.thread relationships": 400 M_UNKNOWN);
        - a second annotation with the same type and key from the same sender
          (event_annotations.md: 400 M_DUPLICATE_ANNOTATION).
        """
        rel = relates_to(content)
        if rel is None:
            return
        rel_type, parent_id = rel
        if rel_type == THREAD:
            parent = await self.events.get_event(parent_id)
            if parent is not None and parent.event.room_id == room_id:
                if relates_to(parent.event.content) is not None:
                    raise MatrixError(
                        400,
                        "M_UNKNOWN",
                        "Cannot start a thread from an event that has a relation itself",
                    )
        elif rel_type == ANNOTATION:
            key = content["m.relates_to"].get("key")
            if isinstance(key, str) and await self.store.has_annotation(
                parent_id, sender, event_type, key
            ):
                raise MatrixError(
                    400,
                    "M_DUPLICATE_ANNOTATION",
                    f"You have already sent this annotation ({event_type}, {key!r})",
                )
