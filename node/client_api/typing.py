"""PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}.

Spec: api/client-server/typing.yaml and modules/typing_notifications.md. Only for
oneself (403 M_FORBIDDEN) and in a room one has joined; ``typing`` is required,
``timeout`` (ms) may be left out when not typing. The logic: node/ephemeral/typing.py.
"""

from __future__ import annotations

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object
from node.client_api.rooms import joined_state, room_id_param
from node.ephemeral.typing import DEFAULT_TIMEOUT_MS
from node.errors import bad_json, forbidden, json_response, missing_param

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


@routes.put(V3 + "/rooms/{room_id}/typing/{user_id}")
@authenticated
async def put_typing(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}"""
    room_id = room_id_param(request)
    if request.match_info["user_id"] != requester.user_id:
        raise forbidden("You can only set your own typing state")
    body = await json_object(request)
    typing = body.get("typing")
    if typing is None:
        raise missing_param("Missing 'typing'")
    if not isinstance(typing, bool):
        raise bad_json("'typing' must be a boolean")
    timeout = body.get("timeout", DEFAULT_TIMEOUT_MS)
    if typing and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0):
        raise bad_json("'timeout' must be a non-negative integer (milliseconds)")
    await joined_state(request, requester, room_id)
    request.app[NODE].typing.set_typing(room_id, requester.user_id, typing, timeout)
    return json_response({})
