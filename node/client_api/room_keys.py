"""Server-side key backups: /room_keys/version and /room_keys/keys.

Spec: api/client-server/key_backup.yaml; end_to_end_encryption.md "Server-side key
backups". The logic (current version, replacement rules, etag and count) is in
node/e2ee/backup.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object
from node.e2ee.backup import RoomKeys, parse_room_key
from node.e2ee.backup_store import RoomKey
from node.errors import bad_json, invalid_param, json_response, missing_param, not_found
from node.ids import InvalidId, RoomID

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


def _algorithm_and_auth_data(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    algorithm = body.get("algorithm")
    auth_data = body.get("auth_data")
    if algorithm is None or auth_data is None:
        raise missing_param("'algorithm' and 'auth_data' are required")
    if not isinstance(algorithm, str) or not algorithm:
        raise bad_json("'algorithm' must be a non-empty string")
    if not isinstance(auth_data, dict):
        raise bad_json("'auth_data' must be an object")
    return algorithm, auth_data


# -- versions ----------------------------------------------------------------------------


@routes.post(V3 + "/room_keys/version")
@authenticated
async def create_version(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/client/v3/room_keys/version"""
    algorithm, auth_data = _algorithm_and_auth_data(await json_object(request))
    version = await request.app[NODE].e2ee.backup.create_version(
        requester.user_id, algorithm, auth_data
    )
    return json_response({"version": version})


@routes.get(V3 + "/room_keys/version")
@routes.get(V3 + "/room_keys/version/{version}")
@authenticated
async def get_version(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/room_keys/version[/{version}]"""
    info = await request.app[NODE].e2ee.backup.get_version(
        requester.user_id, request.match_info.get("version")
    )
    return json_response(info)


@routes.put(V3 + "/room_keys/version/{version}")
@authenticated
async def update_version(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/room_keys/version/{version}: only auth_data may change."""
    body = await json_object(request)
    version = request.match_info["version"]
    algorithm, auth_data = _algorithm_and_auth_data(body)
    if "version" in body and body["version"] != version:
        raise invalid_param("'version' in the body does not match the version in the path")
    await request.app[NODE].e2ee.backup.update_version(
        requester.user_id, version, algorithm, auth_data
    )
    return json_response({})


@routes.delete(V3 + "/room_keys/version/{version}")
@authenticated
async def delete_version(request: web.Request, requester: Requester) -> web.Response:
    """DELETE /_matrix/client/v3/room_keys/version/{version}"""
    await request.app[NODE].e2ee.backup.delete_version(
        requester.user_id, request.match_info["version"]
    )
    return json_response({})


# -- keys --------------------------------------------------------------------------------

KEYS = V3 + "/room_keys/keys"
ROOM_KEYS = KEYS + "/{room_id}"
SESSION_KEY = KEYS + "/{room_id}/{session_id}"


def _version_param(request: web.Request) -> str:
    version = request.query.get("version")
    if version is None:
        raise missing_param("Missing 'version' query parameter")
    return version


def _room_id(room_id: str) -> str:
    try:
        RoomID.parse(room_id)
    except InvalidId as e:
        raise invalid_param(f"Invalid room ID: {e}") from None
    return room_id


def _path_ids(request: web.Request) -> tuple[str | None, str | None]:
    room_id = request.match_info.get("room_id")
    return (
        None if room_id is None else _room_id(room_id),
        request.match_info.get("session_id"),
    )


def _sessions(value: Any, where: str) -> dict[str, RoomKey]:
    """A RoomKeyBackup object: ``{"sessions": {session_id: KeyBackupData}}``."""
    if not isinstance(value, dict) or not isinstance(value.get("sessions"), dict):
        raise bad_json(f"'{where}' must be an object with a 'sessions' object")
    return {
        sid: parse_room_key(key, f"{where}.sessions.{sid}")
        for sid, key in value["sessions"].items()
    }


async def _keys_from_body(request: web.Request) -> RoomKeys:
    body = await json_object(request)
    room_id, session_id = _path_ids(request)
    if session_id is not None:
        assert room_id is not None
        return {room_id: {session_id: parse_room_key(body, "body")}}
    if room_id is not None:
        return {room_id: _sessions(body, "body")}
    rooms = body.get("rooms")
    if rooms is None:
        raise missing_param("Missing 'rooms'")
    if not isinstance(rooms, dict):
        raise bad_json("'rooms' must be an object keyed by room ID")
    return {_room_id(rid): _sessions(room, f"rooms.{rid}") for rid, room in rooms.items()}


@routes.put(KEYS)
@routes.put(ROOM_KEYS)
@routes.put(SESSION_KEY)
@authenticated
async def put_keys(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]"""
    version = _version_param(request)
    keys = await _keys_from_body(request)
    result = await request.app[NODE].e2ee.backup.put_keys(requester.user_id, version, keys)
    return json_response(result)


@routes.get(KEYS)
@routes.get(ROOM_KEYS)
@routes.get(SESSION_KEY)
@authenticated
async def get_keys(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]"""
    version = _version_param(request)
    room_id, session_id = _path_ids(request)
    keys = await request.app[NODE].e2ee.backup.get_keys(
        requester.user_id, version, room_id, session_id
    )
    if session_id is not None:
        key = keys.get(room_id or "", {}).get(session_id)
        if key is None:
            raise not_found("Key not found.")
        return json_response(key.to_json())
    rooms = {
        rid: {"sessions": {sid: k.to_json() for sid, k in sessions.items()}}
        for rid, sessions in keys.items()
    }
    if room_id is not None:
        return json_response(rooms.get(room_id, {"sessions": {}}))
    return json_response({"rooms": rooms})


@routes.delete(KEYS)
@routes.delete(ROOM_KEYS)
@routes.delete(SESSION_KEY)
@authenticated
async def delete_keys(request: web.Request, requester: Requester) -> web.Response:
    """DELETE /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]]"""
    version = _version_param(request)
    room_id, session_id = _path_ids(request)
    result = await request.app[NODE].e2ee.backup.delete_keys(
        requester.user_id, version, room_id, session_id
    )
    return json_response(result)
