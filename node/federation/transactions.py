"""PUT /_matrix/federation/v1/send/{txnId}: a transaction of PDUs and EDUs from another
server.

Spec: content/server-server-api.md "Transactions"; api/server-server/transactions.yaml.
A transaction carries at most 50 PDUs and 100 EDUs. The sender retries a transaction
it got no answer for with the same ID, so answers are remembered per (origin, txnId)
for a while and a retry that arrives while the first is still being processed waits
for it. Each PDU goes through node/federation/pdus.py; each EDU to the EDU handler
(node/federation/edus.py). One bad PDU or EDU never fails the transaction; the one
exception is a PDU whose missing or auth events cannot be fetched because the server
holding them is unreachable right now (a LAN peer that just came back): the
transaction is answered 503 M_UNKNOWN and not remembered, so the sender retries it
(pdus.py ``PduDeferred``, at most ``MAX_DEFERRALS`` times per PDU, then it is dropped).

Server ACLs (content/server-server-api.md "Server Access Control Lists (ACLs)") are
applied per PDU and to the EDUs local to a room: a PDU of a room whose current
``m.room.server_acl`` denies the origin is not processed and gets an error in the
answer; an ``m.typing`` for such a room is ignored, and so are the receipts of an
``m.receipt`` for such a room (the receipts for other rooms are kept).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from aiohttp import web

from node.appkeys import NODE
from node.errors import MatrixError, json_response
from node.federation.acl import SERVER_ACL, server_allowed
from node.federation.common import ORIGIN
from node.federation.dag_store import DagStore
from node.federation.pdu_errors import TransactionDeferred
from node.federation.pdu_format import PduFormatError, parse_pdu

log = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
# How many answered transactions are remembered (retries are answered from here).
REMEMBERED = 1024

routes = web.RouteTableDef()


class TransactionLog:
    """Answers of recent transactions by (origin, txnId), and those in progress."""

    def __init__(self) -> None:
        self.done: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self.running: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}

    def remember(self, key: tuple[str, str], answer: dict[str, Any]) -> None:
        self.done[key] = answer
        while len(self.done) > REMEMBERED:
            self.done.popitem(last=False)


_LOG = web.AppKey("croft.federation.transactions", TransactionLog)


@routes.put("/_matrix/federation/v1/send/{txn_id}")
async def send_transaction(request: web.Request) -> web.Response:
    """PUT /_matrix/federation/v1/send/{txnId}"""
    node = request.app[NODE]
    origin: str = request[ORIGIN]
    txn_id = request.match_info["txn_id"]
    body = await _body(request)
    try:
        pdus, edus = _parse(body, origin)
    except MatrixError as e:
        log.info("transaction %s from %s refused: %s", txn_id, origin, e.message)
        raise
    txns = request.app[_LOG]
    key = (origin, txn_id)
    if key in txns.done:
        return json_response(txns.done[key])
    running = txns.running.get(key)
    if running is not None:
        return json_response(await asyncio.shield(running))
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    txns.running[key] = future
    # Processing goes on if the sender hangs up: its retry is answered from the log.
    task = asyncio.ensure_future(_process(node, origin, pdus, edus))
    try:
        answer = await asyncio.shield(task)
    except BaseException:
        if task.done() and not task.cancelled() and task.exception() is not None:
            txns.running.pop(key, None)
            future.cancel()
            raise
        answer = await task
    txns.running.pop(key, None)
    txns.remember(key, answer)
    if not future.done():
        future.set_result(answer)
    return json_response(answer)


async def _process(node: Any, origin: str, pdus: list[Any], edus: list[Any]) -> dict[str, Any]:
    sender = getattr(node, "federation_sender", None)
    if sender is not None:
        sender.peer_is_back(origin)
    acl = _RoomAcls(node, origin)
    allowed, denied = await acl.split_pdus(pdus)
    try:
        results = await node.pdu_receiver.on_pdus(origin, allowed)
    except TransactionDeferred as e:
        # Not remembered: the retry is processed again. 503 makes any sender retry.
        raise MatrixError(503, "M_UNKNOWN", f"try again later: {e}") from None
    results.update(denied)
    handler = getattr(node, "edu_handler", None)
    for edu in edus:
        if handler is None:
            break
        try:
            checked = await acl.filter_edu(edu)
            if checked is not None:
                await handler.handle(origin, checked)
        except Exception:
            log.exception("EDU from %s failed", origin)
    return {"pdus": results}


class _RoomAcls:
    """The server ACLs of the rooms one transaction touches, as they stand when it
    arrives (looked up once per room)."""

    def __init__(self, node: Any, origin: str) -> None:
        self.node = node
        self.origin = origin
        self.dag = DagStore(node.db)
        self._allowed: dict[str, bool] = {}

    async def allows(self, room_id: str) -> bool:
        allowed = self._allowed.get(room_id)
        if allowed is None:
            # The room's head holds its current state (in memory when it is in use).
            head = await self.node.rooms.head(room_id)
            acl = head.state.get((SERVER_ACL, "")) if head is not None else None
            content = acl.content if acl is not None else None
            allowed = self._allowed[room_id] = server_allowed(self.origin, content)
        return allowed

    async def split_pdus(self, pdus: list[Any]) -> tuple[list[Any], dict[str, dict[str, str]]]:
        """The PDUs to process, and the answers for those the ACLs deny."""
        allowed: list[Any] = []
        denied: dict[str, dict[str, str]] = {}
        for index, raw in enumerate(pdus):
            room_id = raw.get("room_id") if isinstance(raw, dict) else None
            if not isinstance(room_id, str) or await self.allows(room_id):
                allowed.append(raw)
                continue
            label = await self._event_id(raw, room_id) or f"(PDU {index} in {room_id})"
            log.info("PDU %s from %s: denied by the server ACL of %s", label, self.origin, room_id)
            denied[label] = {"error": f"{self.origin} is denied by the server ACL of {room_id}"}
        return allowed, denied

    async def _event_id(self, raw: dict[str, Any], room_id: str) -> str | None:
        version = await self.node.events.get_room_version(room_id)
        if version is None:
            return None
        try:
            return parse_pdu(raw, version).event_id
        except PduFormatError:
            return None

    async def filter_edu(self, edu: Any) -> Any:
        """``edu`` without what the ACLs deny (None: nothing is left of it)."""
        if not isinstance(edu, dict) or not isinstance(edu.get("content"), dict):
            return edu
        content = edu["content"]
        if edu.get("edu_type") == "m.typing":
            room_id = content.get("room_id")
            if isinstance(room_id, str) and not await self.allows(room_id):
                log.info("m.typing from %s: denied by the server ACL of %s", self.origin, room_id)
                return None
        elif edu.get("edu_type") == "m.receipt":
            kept = {}
            for room_id, receipts in content.items():
                if await self.allows(room_id):
                    kept[room_id] = receipts
                else:
                    log.info(
                        "m.receipt from %s: denied by the server ACL of %s", self.origin, room_id
                    )
            return {**edu, "content": kept}
        return edu


async def _body(request: web.Request) -> Any:
    from node.federation.auth import CONTENT

    return request.get(CONTENT)


def _parse(body: Any, origin: str) -> tuple[list[Any], list[Any]]:
    if not isinstance(body, dict):
        raise MatrixError(400, "M_BAD_JSON", "The transaction must be a JSON object")
    sent_by = body.get("origin")
    if sent_by is not None and sent_by != origin:
        raise MatrixError(
            400, "M_BAD_JSON", f"origin {sent_by!r} is not the server that signed the request"
        )
    pdus = body.get("pdus", [])
    edus = body.get("edus", [])
    if not isinstance(pdus, list) or not isinstance(edus, list):
        raise MatrixError(400, "M_BAD_JSON", "pdus and edus must be lists")
    if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
        raise MatrixError(
            400, "M_BAD_JSON", f"A transaction carries at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs"
        )
    return pdus, edus


def add_routes(app: web.Application) -> None:
    app[_LOG] = TransactionLog()
    app.router.add_routes(routes)
