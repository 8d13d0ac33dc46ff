"""Federation queries, both ways: what other servers may ask this one (profiles, room
aliases, the owner's devices and keys, the published room directory), and the same
questions asked of other servers for local clients.

Spec: content/server-server-api.md "Querying for information", "Device Management",
"End-to-End Encryption", "Published Room Directory"; api/server-server/query.yaml
(GET /query/profile, GET /query/directory), user_devices.yaml (GET
/user/devices/{userId}), user_keys.yaml (POST /user/keys/query, /user/keys/claim),
public_rooms.yaml (GET and POST /publicRooms).

Inbound: the X-Matrix middleware has authenticated the origin. Only this server's
users and aliases are answered: another server's gives 400 M_INVALID_PARAM (profiles,
devices) or 404 M_NOT_FOUND (aliases), and is left out of key queries and claims.
Device display names are not published (as Synapse does by default).

Outbound (:class:`RemoteQueries`): a peer's 403 becomes 403 M_FORBIDDEN for the
client; anything else that keeps the answer from us (404, an unreachable server, a
malformed answer) is 404 M_NOT_FOUND saying why: the information is not available,
and the client APIs document no other error for it (Synapse answers 502 here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from node.appkeys import NODE
from node.directory.service import (
    DEFAULT_PUBLIC_ROOMS_LIMIT,
    MAX_PUBLIC_ROOMS_LIMIT,
    PublicRoomsQuery,
    parse_alias,
)
from node.errors import (
    MatrixError,
    bad_json,
    forbidden,
    invalid_param,
    json_response,
    missing_param,
    not_found,
)
from node.federation.auth import CONTENT
from node.federation.client import FederationClient
from node.federation.common import FederationRequestError, RemoteError
from node.ids import InvalidId, RoomID, ServerName, UserID

routes = web.RouteTableDef()
V1 = "/_matrix/federation/v1"
QUERY_TIMEOUT_S = 10.0


# -- inbound -------------------------------------------------------------------------------


def _query(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise missing_param(f"Missing '{name}' query parameter")
    return value


def _local_user(request: web.Request, user_id: str) -> str:
    try:
        domain = UserID.parse(user_id).domain
    except InvalidId as e:
        raise invalid_param(f"Invalid user ID: {e}") from None
    server_name = request.app[NODE].config.server_name
    if domain != server_name:
        raise invalid_param(f"{user_id} is not a user of {server_name}")
    return user_id


def _body(request: web.Request) -> dict[str, Any]:
    body = request.get(CONTENT)
    if not isinstance(body, dict):
        raise bad_json("The body must be a JSON object")
    return body


def _local_users(request: web.Request, wanted: Any, name: str) -> dict[str, Any]:
    """The local users of a ``{user_id: ...}`` request object; others are left out."""
    if wanted is None:
        raise missing_param(f"Missing '{name}'")
    if not isinstance(wanted, dict):
        raise bad_json(f"'{name}' must be an object keyed by user ID")
    server_name = request.app[NODE].config.server_name
    out = {}
    for user_id, value in wanted.items():
        try:
            local = UserID.parse(user_id).domain == server_name
        except InvalidId:
            local = False
        if local:
            out[user_id] = value
    return out


@routes.get(V1 + "/query/profile")
async def query_profile(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/query/profile"""
    user_id = _local_user(request, _query(request, "user_id"))
    field = request.query.get("field")
    profile = await request.app[NODE].profiles.get_profile(user_id)
    if field is None:
        return json_response(profile)
    if field not in profile:
        raise not_found(f"The profile of {user_id} has no field {field!r}")
    return json_response({field: profile[field]})


@routes.get(V1 + "/query/directory")
async def query_directory(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/query/directory"""
    alias = _query(request, "room_alias")
    directory = request.app[NODE].directory
    if parse_alias(alias).domain != directory.server_name:
        raise not_found(f"Room alias {alias} is not hosted on {directory.server_name}")
    return json_response(await directory.lookup(alias))


@routes.get(V1 + "/user/devices/{user_id}")
async def user_devices(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/user/devices/{userId}"""
    user_id = _local_user(request, request.match_info["user_id"])
    return json_response(await request.app[NODE].outbound_edus.local_user_devices(user_id))


@routes.post(V1 + "/user/keys/query")
async def user_keys_query(request: web.Request) -> web.Response:
    """POST /_matrix/federation/v1/user/keys/query"""
    wanted = _local_users(request, _body(request).get("device_keys"), "device_keys")
    for user_id, devices in wanted.items():
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise bad_json(f"'device_keys.{user_id}' must be a list of device IDs")
    # Asked as no one in particular: the owner's own signatures only, no user-signing key.
    found = await request.app[NODE].e2ee.keys.query("", wanted)
    for devices in found["device_keys"].values():
        for keys in devices.values():
            keys["unsigned"] = {}  # device names stay private
    return json_response(
        {name: found[name] for name in ("device_keys", "master_keys", "self_signing_keys")}
    )


@routes.post(V1 + "/user/keys/claim")
async def user_keys_claim(request: web.Request) -> web.Response:
    """POST /_matrix/federation/v1/user/keys/claim"""
    wanted = _local_users(request, _body(request).get("one_time_keys"), "one_time_keys")
    for user_id, devices in wanted.items():
        if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
            raise bad_json(f"'one_time_keys.{user_id}' must map device IDs to algorithms")
    claimed = await request.app[NODE].e2ee.keys.claim(wanted)
    return json_response({"one_time_keys": claimed["one_time_keys"]})


def _limit(value: Any) -> int:
    """public_rooms.yaml: 0 or absent means no limit (bounded here by the largest page)."""
    if value is None:
        return MAX_PUBLIC_ROOMS_LIMIT
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise invalid_param("'limit' must be an integer") from None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise invalid_param("'limit' must be a non-negative integer")
    return min(value, MAX_PUBLIC_ROOMS_LIMIT) if value else MAX_PUBLIC_ROOMS_LIMIT


@routes.get(V1 + "/publicRooms")
async def get_public_rooms(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/publicRooms"""
    query = PublicRoomsQuery(
        limit=_limit(request.query.get("limit")), since=request.query.get("since") or None
    )
    return json_response(await request.app[NODE].directory.public_rooms(query, None))


@routes.post(V1 + "/publicRooms")
async def post_public_rooms(request: web.Request) -> web.Response:
    """POST /_matrix/federation/v1/publicRooms"""
    body = _body(request)
    since = body.get("since")
    if since is not None and not isinstance(since, str):
        raise bad_json("'since' must be a string")
    search_term, room_types = None, None
    flt = body.get("filter")
    if flt is not None:
        if not isinstance(flt, dict):
            raise bad_json("'filter' must be an object")
        search_term = flt.get("generic_search_term")
        if search_term is not None and not isinstance(search_term, str):
            raise bad_json("'filter.generic_search_term' must be a string")
        types = flt.get("room_types")
        if types is not None:
            if not isinstance(types, list) or any(
                t is not None and not isinstance(t, str) for t in types
            ):
                raise bad_json("'filter.room_types' must be a list of strings and nulls")
            room_types = tuple(types)
    query = PublicRoomsQuery(
        limit=_limit(body.get("limit")),
        since=since or None,
        search_term=search_term or None,
        room_types=room_types,
    )
    return json_response(await request.app[NODE].directory.public_rooms(query, None))


def add_routes(app: web.Application) -> None:
    app.router.add_routes(routes)


# -- outbound ------------------------------------------------------------------------------


def _from_peer(server: str, e: FederationRequestError, what: str) -> MatrixError:
    """The client's error for a failed query to ``server`` (see the module docstring)."""
    if isinstance(e, RemoteError):
        message = f"{server} answered about {what}: {e.body.get('error') or e.status}"
        return forbidden(message) if e.status == 403 else not_found(message)
    return not_found(f"Cannot ask {server} about {what} over federation: {e}")


def _bad_answer(server: str, what: str) -> MatrixError:
    return not_found(f"{server} answered a malformed {what} over federation")


class RemoteQueries:
    """Queries to other servers on behalf of local clients."""

    def __init__(self, client: FederationClient, *, timeout: float = QUERY_TIMEOUT_S) -> None:
        self.client = client
        self.timeout = timeout

    async def profile(self, user_id: str, field: str | None = None) -> dict[str, Any]:
        """A remote user's profile (only ``field`` when given)."""
        server = UserID.parse(user_id).domain
        query = {"user_id": user_id, **({"field": field} if field else {})}
        try:
            answer = await self.client.get_json(
                server, V1 + "/query/profile", query=query, timeout=self.timeout
            )
        except FederationRequestError as e:
            raise _from_peer(server, e, "the profile") from None
        if not isinstance(answer, dict):
            raise _bad_answer(server, "profile")
        # null means "not set" (query.yaml); string fields must be strings.
        return {
            k: v
            for k, v in answer.items()
            if v is not None and (k not in ("displayname", "avatar_url") or isinstance(v, str))
        }

    async def room_alias(self, alias: str) -> tuple[str, list[str]]:
        """The room ID of another server's alias and the servers likely in the room
        (the alias's own server included)."""
        server = parse_alias(alias).domain
        try:
            answer = await self.client.get_json(
                server, V1 + "/query/directory", query={"room_alias": alias}, timeout=self.timeout
            )
        except FederationRequestError as e:
            raise _from_peer(server, e, f"room alias {alias}") from None
        room_id = answer.get("room_id") if isinstance(answer, dict) else None
        servers = answer.get("servers") if isinstance(answer, dict) else None
        try:
            RoomID.parse(room_id if isinstance(room_id, str) else "")
        except InvalidId:
            raise _bad_answer(server, "room alias answer") from None
        found = []
        for name in servers if isinstance(servers, list) else []:
            if isinstance(name, str) and name not in found and _is_server_name(name):
                found.append(name)
        if server not in found:
            found.append(server)
        return str(room_id), found

    async def public_rooms(self, server: str, query: PublicRoomsQuery) -> dict[str, Any]:
        """Another server's published room directory (POST /publicRooms)."""
        body: dict[str, Any] = {"limit": query.limit or DEFAULT_PUBLIC_ROOMS_LIMIT}
        if query.since:
            body["since"] = query.since
        flt: dict[str, Any] = {}
        if query.search_term:
            flt["generic_search_term"] = query.search_term
        if query.room_types is not None:
            flt["room_types"] = list(query.room_types)
        if flt:
            body["filter"] = flt
        try:
            answer = await self.client.post_json(
                server, V1 + "/publicRooms", body, timeout=self.timeout
            )
        except FederationRequestError as e:
            raise _from_peer(server, e, "its room directory") from None
        if not isinstance(answer, Mapping) or not isinstance(answer.get("chunk"), list):
            raise _bad_answer(server, "room directory")
        out: dict[str, Any] = {"chunk": [c for c in answer["chunk"] if isinstance(c, dict)]}
        for name in ("next_batch", "prev_batch"):
            if isinstance(answer.get(name), str):
                out[name] = answer[name]
        estimate = answer.get("total_room_count_estimate")
        if isinstance(estimate, int) and not isinstance(estimate, bool):
            out["total_room_count_estimate"] = estimate
        return out


def _is_server_name(name: str) -> bool:
    try:
        ServerName.parse(name)
    except InvalidId:
        return False
    return True
