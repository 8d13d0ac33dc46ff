"""Inbound federation endpoints that let another server read a room's DAG.

Spec: content/server-server-api.md "Retrieving events" (api/server-server/events.yaml:
``GET /event/{eventId}``, ``GET /state/{roomId}``, ``GET /state_ids/{roomId}``),
"Retrieving event authorisation information" (event_auth.yaml:
``GET /event_auth/{roomId}/{eventId}``), "Backfilling and retrieving missing events"
(backfill.yaml: ``GET /backfill/{roomId}``, ``POST /get_missing_events/{roomId}``) and
"Server Access Control Lists (ACLs)" (those endpoints are protected: 403
``M_FORBIDDEN``).

Every request is from an authenticated origin (``request[ORIGIN]``, set by the
X-Matrix middleware). Checks, in order, as Synapse does: the room is known here (else
404 ``M_NOT_FOUND``); the origin has a joined user in the room's current state, or
the room is currently ``world_readable`` (else 403); the room's server ACL allows the
origin (else 403). ``/event`` checks the same for the event's room.

What is served (see node/federation/dag_store.py for the walks):

- ``/state`` and ``/state_ids``: the state *before* the given event (the event itself
  left out, as the spec's "prior to considering any state changes induced by the
  requested event"), with the auth chain of those state events. 404 for an event
  that is not in the room, an outlier or a rejected event (no state is known there).
- ``/event_auth``: the auth chain of the event (its auth events, recursively).
- ``/backfill`` (at most :data:`MAX_BACKFILL` events, newest first) and
  ``/get_missing_events`` (default 10, at most :data:`MAX_MISSING`, oldest first):
  events the origin may not see under the history visibility rules for servers
  (node/federation/server_visibility.py) are served redacted; outliers never.
- ``/event``: the event, redacted when the origin may not see it.

State and auth chains are served in full: a server needs them to check the room.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from node.appkeys import NODE
from node.errors import (
    MatrixError,
    bad_json,
    forbidden,
    invalid_param,
    json_response,
    missing_param,
    not_found,
)
from node.events.canonical import InvalidJson, parse_json
from node.events.pdu import Event
from node.events.room_versions import RoomVersion
from node.federation.acl import SERVER_ACL, server_allowed
from node.federation.auth import CONTENT
from node.federation.common import ORIGIN
from node.federation.dag_store import DagStore, StoredPdu
from node.federation.server_visibility import (
    ServerStateAtEvent,
    pdu_for_server,
    relevant_state_ids,
    server_state,
)
from node.rooms.visibility import HISTORY_VISIBILITY, WORLD_READABLE
from node.storage import federation_outbox as outbox

if TYPE_CHECKING:
    from node.app import Node

MAX_BACKFILL = 100
DEFAULT_MISSING = 10
MAX_MISSING = 100

PREFIX = "/_matrix/federation/v1"

routes = web.RouteTableDef()


# -- the checks every endpoint makes ---------------------------------------------------------


def origin_of(request: web.Request) -> str:
    origin = request.get(ORIGIN)
    if not isinstance(origin, str):
        raise MatrixError(401, "M_UNAUTHORIZED", "Missing X-Matrix authentication")
    return origin


async def check_server_may_read(node: Node, dag: DagStore, room_id: str, origin: str) -> None:
    """403 unless ``origin`` is in the room (or the room is world_readable) and the
    room's server ACL allows it."""
    if origin not in await node.events.get_joined_servers(room_id):
        hv = await dag.current_state_content(room_id, HISTORY_VISIBILITY)
        if hv is None or hv.get("history_visibility") != WORLD_READABLE:
            raise forbidden(f"Server {origin} is not in room {room_id}")
    if not server_allowed(origin, await dag.current_state_content(room_id, SERVER_ACL)):
        raise forbidden(f"Server {origin} is denied by the server ACL of room {room_id}")


async def room_for_origin(request: web.Request, room_id: str) -> tuple[Node, DagStore, RoomVersion]:
    """The node, a DagStore and the room's version, once the checks pass."""
    origin = origin_of(request)
    node = request.app[NODE]
    version = await node.events.get_room_version(room_id)
    if version is None:
        raise not_found(f"Unknown room {room_id}")
    dag = DagStore(node.db)
    await check_server_may_read(node, dag, room_id, origin)
    return node, dag, version


def transaction(node: Node, pdus: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The Transaction object that /event and /backfill answer with."""
    return {
        "origin": node.config.server_name,
        "origin_server_ts": int(time.time() * 1000),
        "pdus": list(pdus),
    }


async def served(node: Node, origin: str, stored: Sequence[StoredPdu]) -> None:
    """``origin`` fetched these events: any that the outbound queue thinned out before
    sending them to it are delivered (node/storage/federation_outbox.py)."""
    ids = [s.event_id for s in stored]
    marks = ",".join("?" * len(ids))
    if ids and await node.db.fetchone(
        f"SELECT 1 FROM federation_outbox_thinned WHERE destination = ? AND event_id IN ({marks})",
        (origin, *ids),
    ):
        await node.db.write_sync(lambda conn: outbox.served_sync(conn, origin, ids))


async def pdus_for_server(
    node: Node, origin: str, stored: Sequence[StoredPdu]
) -> list[Mapping[str, Any]]:
    """``stored`` as ``origin`` may receive them: each judged on the state at it
    (node/federation/server_visibility.py); no known state: in full."""
    groups = await node.states.event_groups(
        s.event_id for s in stored if not s.outlier and not s.rejected
    )
    after_groups = {g.after for g in groups.values()}
    relevant: dict[int, dict[tuple[str, str], str]] = {}
    for group in after_groups:
        relevant[group] = relevant_state_ids(await node.states.state_ids(group), origin)
    events = await node.events.get_events(
        event_id for ids in relevant.values() for event_id in ids.values()
    )
    at_group: dict[int, ServerStateAtEvent] = {}
    for group, ids in relevant.items():
        state: dict[tuple[str, str], Event] = {
            key: events[eid].event for key, eid in ids.items() if eid in events
        }
        at_group[group] = server_state(state, origin)
    out: list[Mapping[str, Any]] = []
    for s in stored:
        g = groups.get(s.event_id)
        out.append(pdu_for_server(s.pdu, s.room_version, at_group[g.after] if g else None))
    return out


# -- query and body parsing --------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]+")


def parse_limit(value: object, *, name: str, cap: int) -> int:
    """A non-negative integer limit (from a query string or a JSON body), at most
    ``cap``: larger values are served as ``cap``."""
    if isinstance(value, bool):
        raise invalid_param(f"{name} must be an integer")
    if isinstance(value, int):
        if value < 0:
            raise invalid_param(f"{name} must not be negative")
        return min(value, cap)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return cap if len(value) > 9 else min(int(value), cap)
    raise invalid_param(f"{name} must be a non-negative integer")


def required_query(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if value is None or value == "":
        raise missing_param(f"Missing query parameter {name}")
    return value


def _string_list(body: Mapping[str, Any], name: str, *, required: bool) -> list[str]:
    value = body.get(name)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_json(f"{name} must be a list of event IDs")
    return value


def _int_field(body: Mapping[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_json(f"{name} must be an integer")
    return value


async def json_body(request: web.Request) -> Mapping[str, Any]:
    """The request's JSON object (parsed by the X-Matrix middleware)."""
    if CONTENT in request:
        content = request[CONTENT]
    else:
        try:
            content = parse_json(await request.read())
        except InvalidJson as e:
            raise MatrixError(400, "M_NOT_JSON", f"Content not JSON: {e}") from None
    if not isinstance(content, Mapping):
        raise bad_json("The body must be a JSON object")
    return content


# -- the endpoints ---------------------------------------------------------------------------


@routes.get(PREFIX + "/event/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/event/{eventId}"""
    origin = origin_of(request)
    event_id = request.match_info["event_id"]
    node = request.app[NODE]
    stored = (await DagStore(node.db).get_pdus([event_id])).get(event_id)
    if stored is None:
        raise not_found(f"Unknown event {event_id}")
    await room_for_origin(request, stored.room_id)
    pdus = await pdus_for_server(node, origin, [stored])
    await served(node, origin, [stored])
    return json_response(transaction(node, pdus))


async def _state_before(request: web.Request) -> tuple[DagStore, RoomVersion, str, list[str]]:
    """The checks and the state of /state and /state_ids: (dag, version, room ID,
    IDs of the state events before ``event_id``)."""
    room_id = request.match_info["room_id"]
    event_id = required_query(request, "event_id")
    node, dag, version = await room_for_origin(request, room_id)
    stored = (await dag.get_pdus([event_id])).get(event_id)
    if stored is None or stored.room_id != room_id:
        raise not_found(f"Unknown event {event_id} in room {room_id}")
    state = None if stored.outlier or stored.rejected else await node.states.state_before(event_id)
    if state is None:
        raise not_found(f"The state at event {event_id} is not known")
    return dag, version, room_id, list(state.values())


@routes.get(PREFIX + "/state_ids/{room_id}")
async def get_state_ids(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/state_ids/{roomId}?event_id="""
    dag, version, room_id, state_ids = await _state_before(request)
    chain = await dag.auth_chain_ids(room_id, version, state_ids)
    return json_response({"pdu_ids": state_ids, "auth_chain_ids": chain})


@routes.get(PREFIX + "/state/{room_id}")
async def get_state(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/state/{roomId}?event_id="""
    dag, version, room_id, state_ids = await _state_before(request)
    chain = await dag.auth_chain_ids(room_id, version, state_ids)
    found = await dag.get_pdus([*state_ids, *chain])
    return json_response(
        {
            "pdus": [found[i].pdu for i in state_ids if i in found],
            "auth_chain": [found[i].pdu for i in chain if i in found],
        }
    )


@routes.get(PREFIX + "/event_auth/{room_id}/{event_id}")
async def get_event_auth(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}"""
    room_id = request.match_info["room_id"]
    event_id = request.match_info["event_id"]
    _, dag, version = await room_for_origin(request, room_id)
    stored = (await dag.get_pdus([event_id])).get(event_id)
    if stored is None or stored.room_id != room_id or stored.rejected:
        raise not_found(f"Unknown event {event_id} in room {room_id}")
    chain = await dag.auth_chain_ids(room_id, version, [event_id])
    found = await dag.get_pdus(chain)
    return json_response({"auth_chain": [found[i].pdu for i in chain if i in found]})


@routes.get(PREFIX + "/backfill/{room_id}")
async def backfill(request: web.Request) -> web.Response:
    """GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit="""
    room_id = request.match_info["room_id"]
    seeds = [v for v in request.query.getall("v", []) if v]
    if not seeds:
        raise missing_param("Missing query parameter v")
    limit = parse_limit(required_query(request, "limit"), name="limit", cap=MAX_BACKFILL)
    node, dag, _ = await room_for_origin(request, room_id)
    ids = await dag.backfill_ids(room_id, seeds, limit)
    found = await dag.get_pdus(ids)
    stored = [found[i] for i in ids if i in found]
    pdus = await pdus_for_server(node, origin_of(request), stored)
    await served(node, origin_of(request), stored)
    return json_response(transaction(node, pdus))


@routes.post(PREFIX + "/get_missing_events/{room_id}")
async def get_missing_events(request: web.Request) -> web.Response:
    """POST /_matrix/federation/v1/get_missing_events/{roomId}"""
    room_id = request.match_info["room_id"]
    body = await json_body(request)
    latest = _string_list(body, "latest_events", required=True)
    earliest = _string_list(body, "earliest_events", required=False)
    try:
        limit = parse_limit(
            _int_field(body, "limit", DEFAULT_MISSING), name="limit", cap=MAX_MISSING
        )
    except MatrixError as e:
        raise bad_json(e.message) from None
    min_depth = _int_field(body, "min_depth", 0)
    node, dag, _ = await room_for_origin(request, room_id)
    ids = await dag.missing_event_ids(room_id, earliest, latest, limit, min_depth)
    found = await dag.get_pdus(ids)
    stored = [found[i] for i in ids if i in found]
    events = await pdus_for_server(node, origin_of(request), stored)
    await served(node, origin_of(request), stored)
    return json_response({"events": events})


def add_routes(app: web.Application) -> None:
    app.router.add_routes(routes)
