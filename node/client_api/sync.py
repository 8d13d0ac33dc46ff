"""GET /_matrix/client/v3/sync and room history: /messages, /members, /joined_members.

Spec: api/client-server/sync.yaml, message_pagination.yaml (GET /rooms/{roomId}/messages),
rooms.yaml (GET /rooms/{roomId}/members, /joined_members).

/messages and /members follow the room's history visibility (node/rooms/visibility.py):
/messages leaves out the events the user may not see and skips the stretches of
history that hold none, so a page may be shorter than ``limit``; ``end`` still moves
on, and is left out once nothing more is visible. Going backwards past the oldest
event stored here, /messages fetches older history from the servers in the room
(node/federation/backfill.py; spec server-server-api.md "Backfilling and retrieving
missing events"). /members of a user who left is the membership when they left;
/joined_members needs the user to be in the room.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.paging import MIN_POSITION, parse_position
from node.client_api.request import authenticated
from node.client_api.rooms import (
    joined_state,
    readable_history,
    readable_state,
    room_id_param,
)
from node.errors import MatrixError, invalid_param, json_response
from node.events.client_format import to_client_event
from node.events.pdu import MEMBER
from node.rooms.visibility import RoomHistory, allowed
from node.storage.events import EventStore, StoredEvent
from node.storage.visibility import HISTORY_START, VisibilityStore
from node.sync.filters import EventFilter, InvalidFilter, SyncFilter
from node.sync.service import add_transaction_ids, pagination_token
from node.sync.tokens import InvalidToken, StreamToken

if TYPE_CHECKING:
    from node.app import Node

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"
MAX_MESSAGES_LIMIT = 1000
# Backfill requests one /messages page may make, the events each asks for at most, and
# the seconds after which the page starts no other.
BACKFILL_ROUNDS = 3
BACKFILL_LIMIT = 100
BACKFILL_SECONDS = 30.0
# Fetches of evicted history (node/history) for one /messages page.
REFETCH_ROUNDS = 5


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_param(f"'{name}' must be an integer") from None
    if value < 0:
        raise invalid_param(f"'{name}' must not be negative")
    return value


async def sync_filter_param(request: web.Request, user_id: str) -> SyncFilter:
    """The ``filter`` query parameter: a stored filter's ID or inline JSON."""
    raw = request.query.get("filter")
    if raw is None:
        return SyncFilter()
    return await request.app[NODE].filters.load_filter(user_id, raw)


async def room_event_filter_param(request: web.Request, user_id: str) -> EventFilter:
    """/messages' ``filter``: an inline RoomEventFilter, or a stored filter's timeline part."""
    raw = request.query.get("filter")
    if raw is None or not raw.lstrip().startswith("{"):
        return (await sync_filter_param(request, user_id)).room.timeline
    try:
        return EventFilter.parse(json.loads(raw), "filter")
    except RecursionError:  # nested deeper than the recursion limit
        raise MatrixError(400, "M_BAD_JSON", "Invalid filter: nested too deeply") from None
    except (ValueError, InvalidFilter) as e:
        raise MatrixError(400, "M_BAD_JSON", f"Invalid filter: {e}") from None


@routes.get(V3 + "/sync")
@authenticated
async def sync(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/sync"""
    since = None
    if "since" in request.query:
        try:
            since = StreamToken.parse(request.query["since"])
        except InvalidToken as e:
            raise invalid_param(str(e)) from None
    full_state = request.query.get("full_state", "false")
    if full_state not in ("true", "false"):
        raise invalid_param("'full_state' must be true or false")
    set_presence = request.query.get("set_presence", "online")
    if set_presence not in ("online", "offline", "unavailable"):
        raise invalid_param("'set_presence' must be online, offline or unavailable")
    sync_filter = await sync_filter_param(request, requester.user_id)
    timeout_ms = _int_param(request, "timeout", 0)
    node = request.app[NODE]
    node.presence.syncing(requester.user_id, set_presence, timeout_ms)
    response = await node.sync.sync(
        requester.user_id,
        requester.device_id,
        since=since,
        sync_filter=sync_filter,
        full_state=full_state == "true",
        timeout_ms=timeout_ms,
    )
    return json_response(response)


@dataclass
class Page:
    """What :func:`read_page` read: ``events``; ``end``, the position to continue from
    (None when nothing more can be visible); ``cursor``, where the reading stopped;
    ``exhausted``, backwards with no ``to``: it went past the oldest event stored
    here (older history may still be fetched from other servers)."""

    events: list[StoredEvent]
    end: int | None
    cursor: int
    exhausted: bool = False


async def read_page(
    events: EventStore,
    history: RoomHistory,
    room_id: str,
    room_filter: EventFilter,
    *,
    backwards: bool,
    start: int,
    to_pos: int | None,
    limit: int,
) -> Page:
    """Up to ``limit`` events of the room that the user may see and that pass the
    filter, from ``start`` (backwards: events at or before it, newest first; forwards:
    events after it, oldest first), none beyond ``to_pos``."""
    if limit <= 0:
        return Page([], None, start)
    chunk: list[StoredEvent] = []
    cursor = start
    page_size = limit * 2 + 10
    while True:
        # Over the stretches of history the user may see nothing of.
        jump = history.backward_from(cursor) if backwards else history.forward_after(cursor)
        if jump is None:
            return Page(chunk, None, cursor)
        cursor = jump
        if to_pos is not None and (cursor <= to_pos if backwards else cursor >= to_pos):
            return Page(chunk, None, cursor)
        page = await events.get_room_events(
            room_id,
            after=to_pos if backwards else cursor,
            upto=cursor if backwards else to_pos,
            limit=page_size,
            newest_first=backwards,
        )
        for s in page:
            cursor = s.stream_ordering - 1 if backwards else s.stream_ordering
            if room_filter.allows(s.event.raw) and history.visible(s.event, s.stream_ordering):
                chunk.append(s)
                if len(chunk) == limit:
                    return Page(chunk, cursor, cursor)
        if len(page) < page_size:
            # The start (or end) of the room's history stored here was reached.
            older = backwards and to_pos is None and _visible_before(history, cursor)
            return Page(chunk, None, cursor, older)


def _visible_before(history: RoomHistory, cursor: int) -> bool:
    """Whether an event older than the stored history, which is all above ``cursor``,
    could be visible to the user (node/storage/visibility.py HISTORY_START)."""
    state = history.state_at(max(cursor, HISTORY_START + 1))
    return allowed(state.history_visibility, state.membership, state.joined_later)


async def read_page_backfilling(
    node: Node, user_id: str, room_id: str, room_filter: EventFilter, page: Page, limit: int
) -> tuple[list[StoredEvent], int | None]:
    """Complete a backwards page that went past the oldest event stored here with
    history fetched from other servers (node/federation/backfill.py): at most
    :data:`BACKFILL_ROUNDS` backfills, each for what the page still needs. A server
    that cannot be reached ends the page with what is stored. Returns the events and
    the position to continue from."""
    chunk = list(page.events)
    added = 0
    give_up = time.monotonic() + BACKFILL_SECONDS
    for _ in range(BACKFILL_ROUNDS):
        if time.monotonic() > give_up:
            break
        added = await node.backfiller.backfill(room_id, min(limit - len(chunk), BACKFILL_LIMIT))
        if not added:
            break
        # The fetched events may change what the user may see (history_visibility).
        history = await VisibilityStore(node.db).history(room_id, user_id)
        page = await read_page(
            node.events,
            history,
            room_id,
            room_filter,
            backwards=True,
            start=page.cursor,
            to_pos=None,
            limit=limit - len(chunk),
        )
        chunk += page.events
        if not page.exhausted:
            return chunk, page.end
    if (chunk or added) and await node.backfiller.backward_extremities(room_id, 1):
        return chunk, page.cursor  # more history may come: let the client ask again
    return chunk, None


async def read_back(
    node: Node,
    user_id: str,
    history: RoomHistory,
    room_id: str,
    room_filter: EventFilter,
    start: int,
    to_pos: int | None,
    limit: int,
) -> tuple[list[StoredEvent], int | None]:
    """A backwards page of ``/messages``. Where it meets events that left the history
    cache (node/history/cache.py) it stops above them, fetches them again from the
    servers in the room and reads on; when none can give them, the page ends there
    without a position to continue from: the client has reached the end of the
    history available. Past the oldest event stored here, history from before this
    server joined is backfilled (:func:`read_page_backfilling`)."""
    chunk: list[StoredEvent] = []
    cursor = start
    floor = await node.history.floor(room_id)
    if floor is not None and (to_pos is None or floor > to_pos):
        to_pos = floor  # older history was forgotten here: the page ends there
    for _ in range(REFETCH_ROUNDS):
        gap = await node.history.gap_top(room_id, cursor)
        stop_at_gap = gap is not None and (to_pos is None or gap > to_pos)
        page = await read_page(
            node.events,
            history,
            room_id,
            room_filter,
            backwards=True,
            start=cursor,
            to_pos=gap if stop_at_gap else to_pos,
            limit=limit - len(chunk),
        )
        chunk += page.events
        if page.end is not None:
            return chunk, page.end
        if not stop_at_gap:
            if page.exhausted and len(chunk) < limit:
                page.events = chunk
                return await read_page_backfilling(node, user_id, room_id, room_filter, page, limit)
            return chunk, None
        cursor = page.cursor
        if not await node.history.refetch(room_id, cursor, limit - len(chunk)):
            return chunk, None  # nobody has it now: the end of the history available
    return chunk, cursor


async def read_forward(
    node: Node,
    history: RoomHistory,
    room_id: str,
    room_filter: EventFilter,
    start: int,
    to_pos: int | None,
    limit: int,
) -> tuple[list[StoredEvent], int | None]:
    """A forwards page of ``/messages``. Where it meets events that left the history
    cache it stops below them and fetches them again from the servers in the room (as
    :func:`read_back` does); when none can give them, it reads on past them (newer
    history follows: the client must be able to reach it)."""
    chunk: list[StoredEvent] = []
    cursor = start
    for _ in range(REFETCH_ROUNDS):
        gap = await node.history.gap_above(room_id, cursor, limit - len(chunk))
        stop_at_gap = gap is not None and (to_pos is None or gap[0] <= to_pos)
        page = await read_page(
            node.events,
            history,
            room_id,
            room_filter,
            backwards=False,
            start=cursor,
            to_pos=gap[0] - 1 if gap is not None and stop_at_gap else to_pos,
            limit=limit - len(chunk),
        )
        chunk += page.events
        if page.end is not None or gap is None or not stop_at_gap:
            return chunk, page.end
        cursor = gap[0] - 1
        if not await node.history.refetch(room_id, gap[1], limit - len(chunk)):
            break  # nobody has them now: read on past them
    page = await read_page(
        node.events,
        history,
        room_id,
        room_filter,
        backwards=False,
        start=cursor,
        to_pos=to_pos,
        limit=limit - len(chunk),
    )
    return chunk + page.events, page.end


@routes.get(V3 + "/rooms/{room_id}/messages")
@authenticated
async def messages(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/rooms/{roomId}/messages"""
    room_id = room_id_param(request)
    node = request.app[NODE]
    history = await readable_history(request, requester, room_id)
    direction = request.query.get("dir", "b")
    if direction not in ("b", "f"):
        raise invalid_param("'dir' must be 'b' or 'f'")
    limit = min(_int_param(request, "limit", 10), MAX_MESSAGES_LIMIT)
    room_filter = await room_event_filter_param(request, requester.user_id)
    start_tok = request.query.get("from")
    if start_tok is None:
        start = node.notifier.current_token().get("events") if direction == "b" else MIN_POSITION
    else:
        start = parse_position(start_tok)
    to_pos = parse_position(request.query["to"]) if "to" in request.query else None
    if direction == "b":
        chunk, end = await read_back(
            node, requester.user_id, history, room_id, room_filter, start, to_pos, limit
        )
        horizon = await node.history.retention_horizon(room_id)
        expired = [i for i, s in enumerate(chunk) if s.event.origin_server_ts < horizon]
        if expired:
            # Retention: what it has not taken out yet (and the newest events, which
            # stay: new ones are built on them) is not served once expired; the
            # history ends there.
            chunk, end = chunk[: expired[0]], None
    else:
        chunk, end = await read_forward(node, history, room_id, room_filter, start, to_pos, limit)
    served = [(s.event, to_client_event(s.event)) for s in chunk]
    own = [(e.event_id, out["unsigned"]) for e, out in served if e.sender == requester.user_id]
    await add_transaction_ids(node.events, requester.user_id, requester.device_id, own)
    await node.relations.bundle(served, requester.user_id, history.upper_bound())
    body: dict[str, Any] = {
        "start": start_tok or pagination_token(start),
        "chunk": [out for _, out in served],
    }
    if end is not None:
        body["end"] = pagination_token(end)
    if room_filter.lazy_load_members:
        state_ids = await readable_state(request, room_id, history)
        senders = {s.event.sender for s in chunk}
        ids = [state_ids[(MEMBER, u)] for u in senders if (MEMBER, u) in state_ids]
        found = await node.events.get_events(ids)
        body["state"] = [to_client_event(s.event) for s in found.values()]
    return json_response(body)


@routes.get(V3 + "/rooms/{room_id}/members")
@authenticated
async def members(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/rooms/{roomId}/members"""
    room_id = room_id_param(request)
    history = await readable_history(request, requester, room_id)
    state_ids = await readable_state(request, room_id, history)
    membership = request.query.get("membership")
    not_membership = request.query.get("not_membership")
    found = await request.app[NODE].events.get_events(
        eid for (t, _), eid in state_ids.items() if t == MEMBER
    )
    chunk = [
        to_client_event(s.event)
        for s in found.values()
        if (membership is None or s.event.membership == membership)
        and (not_membership is None or s.event.membership != not_membership)
    ]
    return json_response({"chunk": chunk})


@routes.get(V3 + "/rooms/{room_id}/joined_members")
@authenticated
async def joined_members(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/rooms/{roomId}/joined_members"""
    room_id = room_id_param(request)
    state_ids = await joined_state(request, requester, room_id)
    found = await request.app[NODE].events.get_events(
        eid for (t, _), eid in state_ids.items() if t == MEMBER
    )
    joined = {}
    for s in found.values():
        if s.event.membership == "join" and s.event.state_key:
            content = s.event.content
            # rooms.yaml RoomMember: both are optional strings, so absent, never null.
            profile = {
                "display_name": content.get("displayname"),
                "avatar_url": content.get("avatar_url"),
            }
            joined[s.event.state_key] = {k: v for k, v in profile.items() if isinstance(v, str)}
    return json_response({"joined": joined})
