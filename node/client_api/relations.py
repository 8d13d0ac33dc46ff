"""Child events and threads.

Spec: api/client-server/relations.yaml (GET /_matrix/client/v1/rooms/{roomId}/relations/
{eventId}[/{relType}[/{eventType}]]), threads_list.yaml (GET /_matrix/client/v1/rooms/
{roomId}/threads); content/client-server-api/_index.md "Relationships API",
modules/threading.md "Querying threads in a room". Both answers carry bundled
aggregations. Tokens are /messages positions (node/client_api/paging.py).

History visibility (node/rooms/visibility.py): a parent the user may not see is 404
(relations.yaml: "it might be contained in history that is not accessible to the
user"); children and thread roots they may not see are left out of ``chunk``, so a
page may be shorter than ``limit`` while ``next_batch`` still moves on.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.paging import bool_param, dir_param, int_param, position_param
from node.client_api.request import authenticated
from node.client_api.rooms import (
    readable_history,
    room_id_param,
    visible_event,
    visible_events,
)
from node.errors import invalid_param, json_response
from node.events.client_format import to_client_event
from node.relations.aggregations import RECURSION_DEPTH
from node.sync.service import pagination_token

routes = web.RouteTableDef()
V1 = "/_matrix/client/v1"

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@routes.get(V1 + "/rooms/{room_id}/relations/{event_id}")
@routes.get(V1 + "/rooms/{room_id}/relations/{event_id}/{rel_type}")
@routes.get(V1 + "/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}")
@authenticated
async def relations(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]"""
    room_id = room_id_param(request)
    node = request.app[NODE]
    history = await readable_history(request, requester, room_id)
    direction = dir_param(request)
    limit = int_param(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    recurse = bool_param(request, "recurse")
    from_pos = position_param(request, "from")
    to_pos = position_param(request, "to")
    parent = await visible_event(request, history, room_id, request.match_info["event_id"])
    page = await node.relations.children(
        requester.user_id,
        room_id,
        parent.event.event_id,
        rel_type=request.match_info.get("rel_type"),
        event_type=request.match_info.get("event_type"),
        from_pos=from_pos,
        to_pos=to_pos,
        direction=direction,
        limit=limit,
        recurse=bool(recurse),
    )
    served = [(s.event, to_client_event(s.event)) for s in visible_events(history, page.events)]
    await node.relations.bundle(served, requester.user_id, history.upper_bound())
    body: dict[str, Any] = {"chunk": [out for _, out in served]}
    if page.next_position is not None:
        body["next_batch"] = pagination_token(page.next_position)
    if "from" in request.query:
        body["prev_batch"] = request.query["from"]
    if recurse is not None:
        body["recursion_depth"] = RECURSION_DEPTH if recurse else 1
    return json_response(body)


@routes.get(V1 + "/rooms/{room_id}/threads")
@authenticated
async def threads(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v1/rooms/{roomId}/threads"""
    room_id = room_id_param(request)
    node = request.app[NODE]
    history = await readable_history(request, requester, room_id)
    include = request.query.get("include", "all")
    if include not in ("all", "participated"):
        raise invalid_param("'include' must be 'all' or 'participated'")
    limit = int_param(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    page = await node.relations.threads(
        requester.user_id,
        room_id,
        participated_only=include == "participated",
        from_pos=position_param(request, "from"),
        limit=limit,
    )
    served = [(s.event, to_client_event(s.event)) for s in visible_events(history, page.roots)]
    await node.relations.bundle(served, requester.user_id, history.upper_bound())
    body: dict[str, Any] = {"chunk": [out for _, out in served]}
    if page.next_position is not None:
        body["next_batch"] = pagination_token(page.next_position)
    return json_response(body)
