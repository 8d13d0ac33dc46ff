"""Receipts and read markers.

Spec: api/client-server/receipts.yaml (POST /rooms/{roomId}/receipt/{receiptType}/{eventId},
with ``thread_id``), read_markers.yaml (POST /rooms/{roomId}/read_markers);
modules/receipts.md, read_markers.md. Only in a room one has joined (403 M_FORBIDDEN);
an event not in the room is 404 M_NOT_FOUND; a bad receipt type or ``thread_id`` is
400 M_INVALID_PARAM. The logic: node/ephemeral/receipts.py.
"""

from __future__ import annotations

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object
from node.client_api.rooms import joined_state, room_id_param
from node.ephemeral.receipts import (
    FULLY_READ,
    RECEIPT_TYPES,
    check_receipt_type,
    check_thread_id,
)
from node.errors import bad_json, json_response

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


@routes.post(V3 + "/rooms/{room_id}/receipt/{receipt_type}/{event_id}")
@authenticated
async def post_receipt(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}"""
    room_id = room_id_param(request)
    receipt_type = request.match_info["receipt_type"]
    check_receipt_type(receipt_type)
    # The body is required, but clients (and older spec versions) send none.
    body = await json_object(request, allow_empty=True)
    thread_id = check_thread_id(receipt_type, body)
    await joined_state(request, requester, room_id)
    node = request.app[NODE]
    await node.receipts.post_receipt(
        room_id, requester.user_id, receipt_type, request.match_info["event_id"], thread_id
    )
    node.presence.activity(requester.user_id)
    return json_response({})


@routes.post(V3 + "/rooms/{room_id}/read_markers")
@authenticated
async def post_read_markers(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/rooms/{roomId}/read_markers"""
    room_id = room_id_param(request)
    body = await json_object(request, allow_empty=True)
    markers: dict[str, str] = {}
    for key in (FULLY_READ, *RECEIPT_TYPES):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise bad_json(f"'{key}' must be an event ID")
        markers[key] = value
    await joined_state(request, requester, room_id)
    node = request.app[NODE]
    await node.receipts.set_read_markers(room_id, requester.user_id, markers)
    node.presence.activity(requester.user_id)
    return json_response({})
