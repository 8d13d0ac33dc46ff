"""The key endpoints: our own key document, and the notary service for other servers'.

Spec: content/server-server-api.md "Publishing Keys" (api/server-server/keys_server.yaml:
GET /_matrix/key/v2/server) and "Querying Keys Through Another Server"
(api/server-server/keys_query.yaml: GET /_matrix/key/v2/query/{serverName} and
POST /_matrix/key/v2/query). These endpoints are not authenticated.

As a notary, Croft serves our own keys and the documents of the keys it has verified
(node/federation/keyring.py), each keeping its server's signature and gaining ours. A
server that cannot be reached is answered from what is stored, or left out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from aiohttp import web

from node.appkeys import NODE
from node.errors import bad_json, invalid_param, json_response, not_json
from node.events.canonical import InvalidJson, parse_json
from node.ids import InvalidId, ServerName

# Bounds on one notary query: servers asked about, and key IDs per server.
MAX_QUERY_SERVERS = 100
MAX_QUERY_KEY_IDS = 32

routes = web.RouteTableDef()


def _now_ms() -> int:
    return int(time.time() * 1000)


@routes.get("/_matrix/key/v2/server")
@routes.get("/_matrix/key/v2/server/{key_id}")  # deprecated form: the key ID is ignored
async def server_keys(request: web.Request) -> web.Response:
    """GET /_matrix/key/v2/server: this server's signed key document."""
    return json_response(request.app[NODE].server_key.key_document())


@routes.get("/_matrix/key/v2/query/{server_name}")
async def query_one(request: web.Request) -> web.Response:
    """GET /_matrix/key/v2/query/{serverName}: all keys of one server, notary-signed."""
    server_name = request.match_info["server_name"]
    if not _is_server_name(server_name):
        raise invalid_param(f"{server_name!r} is not a server name")
    raw = request.query.get("minimum_valid_until_ts")
    minimum = _now_ms()
    if raw is not None:
        try:
            minimum = int(raw)
        except ValueError:
            raise invalid_param("minimum_valid_until_ts must be an integer") from None
    keyring = request.app[NODE].keyring
    docs = await keyring.key_documents_for(server_name, (), minimum)
    return json_response({"server_keys": docs})


@routes.post("/_matrix/key/v2/query")
async def query_many(request: web.Request) -> web.Response:
    """POST /_matrix/key/v2/query: keys of several servers, notary-signed."""
    try:
        body = parse_json(await request.read())
    except InvalidJson as e:
        raise not_json(f"Content not JSON: {e}") from None
    criteria = parse_query_body(body, _now_ms())
    keyring = request.app[NODE].keyring
    answers = await asyncio.gather(
        *(
            keyring.key_documents_for(server, key_ids, minimum)
            for server, (key_ids, minimum) in criteria.items()
        )
    )
    return json_response({"server_keys": [doc for docs in answers for doc in docs]})


def parse_query_body(body: object, now_ms: int) -> dict[str, tuple[list[str], int]]:
    """``{server_keys: {server: {key_id: {minimum_valid_until_ts}}}}`` -> {server:
    (key IDs, the largest minimum_valid_until_ts, now when none is given)}. Names that
    are not server names are skipped. Raises MatrixError (400 M_BAD_JSON)."""
    if not isinstance(body, Mapping):
        raise bad_json("The body must be a JSON object")
    server_keys = body.get("server_keys")
    if not isinstance(server_keys, Mapping):
        raise bad_json("server_keys must be an object")
    if len(server_keys) > MAX_QUERY_SERVERS:
        raise bad_json(f"server_keys names more than {MAX_QUERY_SERVERS} servers")
    out: dict[str, tuple[list[str], int]] = {}
    for server, keys in server_keys.items():
        if not isinstance(keys, Mapping):
            raise bad_json(f"server_keys.{server} must be an object")
        key_ids: list[str] = []
        minimum: int | None = None
        for key_id, crit in list(keys.items())[:MAX_QUERY_KEY_IDS]:
            if not isinstance(crit, Mapping):
                raise bad_json(f"server_keys.{server}.{key_id} must be an object")
            ts = crit.get("minimum_valid_until_ts")
            if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)):
                raise bad_json("minimum_valid_until_ts must be an integer")
            key_ids.append(key_id)
            ts = now_ms if ts is None else ts
            minimum = ts if minimum is None else max(minimum, ts)
        if _is_server_name(server):
            out[server] = (key_ids, now_ms if minimum is None else minimum)
    return out


def _is_server_name(value: str) -> bool:
    try:
        ServerName.parse(value)
    except InvalidId:
        return False
    return True


def add_routes(app: web.Application) -> None:
    app.router.add_routes(routes)
