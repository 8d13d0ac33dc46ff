"""The key management API and cross-signing.

Spec: api/client-server/keys.yaml (POST /keys/upload, /keys/query, /keys/claim, GET
/keys/changes) and cross_signing.yaml (POST /keys/device_signing/upload, which needs
user-interactive auth to replace existing keys, and /keys/signatures/upload);
end_to_end_encryption.md "Key Distribution" and "Cross-signing".
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object
from node.client_api.uia import require_password
from node.e2ee.validate import (
    CROSS_SIGNING_USAGES,
    CrossSigningKey,
    check_cross_signing_key,
    check_device_keys,
    check_fallback_keys,
    check_key_map,
    check_user_id,
)
from node.errors import bad_json, invalid_param, json_response, missing_param
from node.sync.tokens import InvalidToken, StreamToken

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"
# The unstable name some clients still send (MSC2732).
UNSTABLE_FALLBACK_KEYS = "org.matrix.msc2732.fallback_keys"


def _user_map(body: dict[str, Any], name: str) -> dict[str, Any]:
    """A required ``{user_id: ...}`` object with valid user IDs."""
    value = body.get(name)
    if value is None:
        raise missing_param(f"Missing '{name}'")
    if not isinstance(value, dict):
        raise bad_json(f"'{name}' must be an object keyed by user ID")
    for user_id in value:
        check_user_id(user_id, name)
    return value


@routes.post(V3 + "/keys/upload")
@authenticated
async def upload_keys(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/keys/upload"""
    body = await json_object(request)
    raw_device_keys = body.get("device_keys")
    device_keys = (
        None
        if raw_device_keys is None
        else check_device_keys(raw_device_keys, requester.user_id, requester.device_id)
    )
    one_time_keys = check_key_map(body.get("one_time_keys"), "one_time_keys")
    fallback_keys = check_fallback_keys(body.get("fallback_keys", body.get(UNSTABLE_FALLBACK_KEYS)))
    counts = await request.app[NODE].e2ee.keys.upload(
        requester.user_id, requester.device_id, device_keys, one_time_keys, fallback_keys
    )
    return json_response({"one_time_key_counts": counts})


@routes.post(V3 + "/keys/query")
@authenticated
async def query_keys(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/keys/query"""
    body = await json_object(request)
    wanted = _user_map(body, "device_keys")
    for user_id, devices in wanted.items():
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise bad_json(f"'device_keys.{user_id}' must be a list of device IDs")
    result = await request.app[NODE].e2ee.keys.query(requester.user_id, wanted)
    return json_response(result)


@routes.post(V3 + "/keys/claim")
@authenticated
async def claim_keys(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/keys/claim"""
    body = await json_object(request)
    wanted = _user_map(body, "one_time_keys")
    for user_id, devices in wanted.items():
        if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
            raise bad_json(f"'one_time_keys.{user_id}' must map device IDs to algorithms")
    return json_response(await request.app[NODE].e2ee.keys.claim(wanted))


def _token_param(request: web.Request, name: str) -> StreamToken:
    raw = request.query.get(name)
    if raw is None:
        raise missing_param(f"Missing '{name}' query parameter")
    try:
        return StreamToken.parse(raw)
    except InvalidToken as e:
        raise invalid_param(f"'{name}': {e}") from None


@routes.get(V3 + "/keys/changes")
@authenticated
async def key_changes(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/keys/changes"""
    since = _token_param(request, "from")
    upto = _token_param(request, "to")
    changed, left = await request.app[NODE].e2ee.keys.device_list_delta(
        requester.user_id, since, upto
    )
    return json_response({"changed": changed, "left": left})


# -- cross-signing ------------------------------------------------------------------------


@routes.post(V3 + "/keys/device_signing/upload")
@authenticated
async def upload_cross_signing_keys(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/keys/device_signing/upload"""
    body = await json_object(request)
    upload: dict[str, CrossSigningKey] = {}
    for usage in CROSS_SIGNING_USAGES:
        value = body.get(f"{usage}_key")
        if value is not None:
            upload[usage] = check_cross_signing_key(value, usage, requester.user_id)
    service = request.app[NODE].e2ee.cross_signing
    if await service.needs_auth(requester.user_id, upload):
        await require_password(request, requester, body)
    await service.upload_keys(requester.user_id, upload)
    return json_response({})


@routes.post(V3 + "/keys/signatures/upload")
@authenticated
async def upload_signatures(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/keys/signatures/upload"""
    body = await json_object(request)
    for user_id, by_key in body.items():
        check_user_id(user_id, "signatures")
        if not isinstance(by_key, dict):
            raise bad_json(f"'{user_id}' must map key IDs to signed objects")
    failures = await request.app[NODE].e2ee.cross_signing.upload_signatures(requester.user_id, body)
    return json_response({"failures": failures})
