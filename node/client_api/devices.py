"""Device management.

Spec: api/client-server/device_management.yaml (GET /devices, GET/PUT/DELETE
/devices/{deviceId}, POST /delete_devices) and modules/device_management.md:
deleting devices invalidates their access tokens and sits behind user-interactive
authentication (the owner's password, node/client_api/uia.py). PUT only updates:
creating devices is for application services, which this node does not have.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object, string_field
from node.client_api.uia import require_password
from node.errors import bad_json, json_response, missing_param, not_found
from node.storage.accounts import Device

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


def device_json(device: Device) -> dict[str, Any]:
    """definitions/client_device.yaml. Unknown fields are null rather than absent, as
    Synapse sends them: matrix-nio (the TUI's library) requires all four keys."""
    return {
        "device_id": device.device_id,
        "display_name": device.display_name,
        "last_seen_ip": device.last_seen_ip,
        "last_seen_ts": device.last_seen_ts,
    }


@routes.get(V3 + "/devices")
@authenticated
async def get_devices(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/devices"""
    devices = await request.app[NODE].accounts.get_devices(requester.user_id)
    return json_response({"devices": [device_json(d) for d in devices]})


@routes.get(V3 + "/devices/{device_id}")
@authenticated
async def get_device(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/devices/{deviceId}"""
    device = await request.app[NODE].accounts.get_device(
        requester.user_id, request.match_info["device_id"]
    )
    if device is None:
        raise not_found("No such device.")
    return json_response(device_json(device))


@routes.put(V3 + "/devices/{device_id}")
@authenticated
async def update_device(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/devices/{deviceId}: rename an existing device."""
    body = await json_object(request, allow_empty=True)
    display_name = string_field(body, "display_name", required=False)
    accounts = request.app[NODE].accounts
    device_id = request.match_info["device_id"]
    if display_name is None:
        found = await accounts.get_device(requester.user_id, device_id) is not None
    else:
        found = await accounts.rename_device(requester.user_id, device_id, display_name)
    if not found:
        raise not_found("No such device.")
    return json_response({})


@routes.delete(V3 + "/devices/{device_id}")
@authenticated
async def delete_device(request: web.Request, requester: Requester) -> web.Response:
    """DELETE /_matrix/client/v3/devices/{deviceId} (UIA); a device already gone is 200."""
    body = await json_object(request, allow_empty=True)
    await require_password(request, requester, body)
    await request.app[NODE].accounts.delete_devices(
        requester.user_id, [request.match_info["device_id"]]
    )
    return json_response({})


@routes.post(V3 + "/delete_devices")
@authenticated
async def delete_devices(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/delete_devices (UIA)"""
    body = await json_object(request)
    devices = body.get("devices")
    if devices is None:
        raise missing_param("Missing 'devices'")
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise bad_json("'devices' must be a list of device IDs")
    await require_password(request, requester, body)
    await request.app[NODE].accounts.delete_devices(requester.user_id, devices)
    return json_response({})
