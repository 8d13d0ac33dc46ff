"""POST /_matrix/client/v3/search

Spec: api/client-server/search.yaml, modules/search.md. Only the room_events category
exists; the work is in node/search/service.py, which searches the rooms the user is
in and those they left up to their leave. Here the results (and the events of their
``event_context``) that the room's history visibility hides from the user are left
out (node/rooms/visibility.py): a page may then hold fewer than the filter's
``limit``; ``next_batch`` still continues after the last result looked at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated, json_object
from node.errors import MatrixError, bad_json, json_response
from node.rooms.visibility import ClientEvent
from node.search.service import parse_room_events
from node.storage.visibility import Snapshot, VisibilityStore

routes = web.RouteTableDef()
V3 = "/_matrix/client/v3"


def _context_events(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    context = item.get("context") or {}
    return [*context.get("events_before", ()), *context.get("events_after", ())]


def _visible(snapshot: Snapshot, room_id: str, event: Mapping[str, Any]) -> bool:
    position = snapshot.positions.get(event.get("event_id", ""))
    history = snapshot.rooms.get(room_id)
    return (
        position is not None
        and history is not None
        and history.visible(ClientEvent.of(event), position)
    )


async def only_visible(store: VisibilityStore, user_id: str, found: dict[str, Any]) -> None:
    """Drop from a room_events answer what the user may not see (in place)."""
    results: list[dict[str, Any]] = found.get("results", [])
    if not results:
        return
    ids = [item["result"]["event_id"] for item in results]
    ids += [e["event_id"] for item in results for e in _context_events(item)]
    rooms = {item["result"]["room_id"] for item in results}
    snapshot = await store.load(user_id, rooms, ids)
    kept = []
    for item in results:
        room_id = item["result"]["room_id"]
        if not _visible(snapshot, room_id, item["result"]):
            continue
        context = item.get("context")
        if context is not None:
            for key in ("events_before", "events_after"):
                context[key] = [e for e in context[key] if _visible(snapshot, room_id, e)]
        kept.append(item)
    found["results"] = kept
    shown = {item["result"]["event_id"] for item in kept}
    for by_value in found.get("groups", {}).values():
        for value in list(by_value):
            group = by_value[value]
            group["results"] = [eid for eid in group["results"] if eid in shown]
            if not group["results"] and "next_batch" not in group:
                del by_value[value]
    if "state" in found:
        rooms_shown = {item["result"]["room_id"] for item in kept}
        found["state"] = {r: s for r, s in found["state"].items() if r in rooms_shown}


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
        node = request.app[NODE]
        criteria = parse_room_events(categories["room_events"])
        found = await node.search.search_room_events(
            requester.user_id, criteria, request.query.get("next_batch")
        )
        await only_visible(VisibilityStore(node.db), requester.user_id, found)
        out["room_events"] = found
    return json_response({"search_categories": out})
