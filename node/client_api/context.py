"""GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}

Spec: api/client-server/event_context.yaml, modules/event_context.md. ``limit``
(default 10, at most 100) is split between the events before (``limit // 2``) and
after (the rest). The filter applies to ``events_before``, ``events_after`` and
``state``, not to ``event``; with ``lazy_load_members`` the state keeps only the
member events of the senders of the returned events. ``state`` is the state at the
last event returned (node/rooms/context.py says how it is computed). ``start`` and
``end`` are /messages tokens. Every returned event carries its bundled aggregations.

History visibility (node/rooms/visibility.py): an event the user may not see is 404
(as GET /event answers), and the events around it that they may not see are left
out; for a user who left, the events after stop at the last position they may see.
"""

from __future__ import annotations

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.paging import int_param
from node.client_api.request import authenticated
from node.client_api.rooms import readable_history, room_id_param, visible_event, visible_events
from node.client_api.sync import room_event_filter_param
from node.errors import json_response
from node.events.client_format import to_client_event
from node.events.pdu import MEMBER
from node.sync.service import pagination_token

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


@routes.get(V3 + "/rooms/{room_id}/context/{event_id}")
@authenticated
async def context(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}"""
    room_id = room_id_param(request)
    node = request.app[NODE]
    history = await readable_history(request, requester, room_id)
    limit = int_param(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)
    event_filter = await room_event_filter_param(request, requester.user_id)
    stored = await visible_event(request, history, room_id, request.match_info["event_id"])
    before_limit = limit // 2
    around = await node.context.around(
        room_id,
        stored.stream_ordering,
        before=before_limit,
        after=limit - before_limit,
        event_filter=event_filter,
        upto=history.upper_bound(),
    )
    before = visible_events(history, around.before)
    after = visible_events(history, around.after)
    returned = [*before, stored, *after]
    last = max(s.stream_ordering for s in returned)
    state_ids = await node.context.state_ids_at(room_id, last)
    if event_filter.lazy_load_members:
        senders = {s.event.sender for s in returned}
        state_ids = {k: v for k, v in state_ids.items() if k[0] != MEMBER or k[1] in senders}
    state = await node.events.get_events(state_ids.values())
    state_events = sorted(
        (s for s in state.values() if event_filter.allows(s.event.raw)),
        key=lambda s: s.stream_ordering,
    )
    served = [(s.event, to_client_event(s.event)) for s in returned]
    await node.relations.bundle(served, requester.user_id, history.upper_bound())
    out = [d for _, d in served]
    n_before = len(before)
    return json_response(
        {
            "start": pagination_token(around.start),
            "end": pagination_token(around.end),
            "events_before": out[:n_before],
            "event": out[n_before],
            "events_after": out[n_before + 1 :],
            "state": [to_client_event(s.event) for s in state_events],
        }
    )
