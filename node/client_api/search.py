"""POST /_matrix/client/v3/search

Spec: api/client-server/search.yaml, modules/search.md. Only the room_events category
exists; the work is in node/search/service.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object
from node.errors import MatrixError, bad_json, json_response
from node.search.service import parse_room_events

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


@routes.post(V3 + "/search")
@authenticated
async def search(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/search"""
    body = await json_object(request)
    categories = body.get("search_categories")
    if categories is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing 'search_categories'")
    if not isinstance(categories, dict):
        raise bad_json("'search_categories' must be an object")
    out: dict[str, Any] = {}
    if "room_events" in categories:
        criteria = parse_room_events(categories["room_events"])
        out["room_events"] = await request.app[NODE].search.search_room_events(
            requester.user_id, criteria, request.query.get("next_batch")
        )
    return json_response({"search_categories": out})
