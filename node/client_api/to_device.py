"""PUT /sendToDevice/{eventType}/{txnId}.

Spec: api/client-server/to_device.yaml; send_to_device.md "Client behaviour" (one
message per device per transaction, ``*`` for all the user's devices) and
_index.md "Transaction identifiers" (a retransmission returns the same ``{}`` and
sends nothing). Delivery happens in /sync (node/e2ee/sync.py).
"""

from __future__ import annotations

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object
from node.e2ee.validate import check_user_id
from node.errors import bad_json, json_response, missing_param

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


@routes.put(V3 + "/sendToDevice/{event_type}/{txn_id}")
@authenticated
async def send_to_device(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}"""
    body = await json_object(request)
    messages = body.get("messages")
    if messages is None:
        raise missing_param("Missing 'messages'")
    if not isinstance(messages, dict):
        raise bad_json("'messages' must be an object keyed by user ID")
    for user_id, by_device in messages.items():
        check_user_id(user_id, "messages")
        if not isinstance(by_device, dict) or not all(
            isinstance(content, dict) for content in by_device.values()
        ):
            raise bad_json(f"'messages.{user_id}' must map device IDs to content objects")
    await request.app[NODE].e2ee.to_device.send(
        requester.user_id,
        requester.device_id,
        request.match_info["event_type"],
        request.match_info["txn_id"],
        messages,
    )
    return json_response({})
