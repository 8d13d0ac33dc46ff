"""Property-based fuzzing of PUT /_matrix/federation/v1/send/{txnId} (issue #4: "fuzzed
transactions never crash the node"; spec: content/server-server-api.md "Transactions",
"Checks performed on receipt of a PDU", "EDUs").

Node B, a real node joined to a room of node A, sends A transactions that hypothesis
generates: JSON of any shape, transactions of junk, of valid PDUs and EDUs mutated
(fields dropped, retyped, made huge or deep, IDs pointing nowhere, senders of other
servers), some mutated PDUs re-hashed and re-signed with B's real key so that they get
past the signature check into fetching and authorisation. Each request is signed by
hand the way Synapse signs (canonicaljson, which lets floats and large integers
through). Every answer must be a 200 with a ``pdus`` map or a 4xx Matrix error, never
a 5xx; no PDU may end in an internal error (``could not process``), and nothing under
``node`` may log an error. The last test checks that A is intact: ``PRAGMA
integrity_check``, a canary room that the fuzzer never named still syncs, and a valid
PDU from B is still accepted.

Examples are derandomized (reproducible in CI) and bounded: EXAMPLES per test.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import sqlite3
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import canonicaljson
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.app import RunningNode
from node.events.canonical import InvalidJson
from node.events.hashing import add_content_hash, encode_base64
from node.events.pdu import Event
from node.events.room_versions import RoomVersion, room_version
from node.events.signing import sign_event
from node.rooms.builder import build_event
from tests.conftest import LoopbackOnlyResolver
from tests.federation.nodes import croft_node
from tests.federation.test_two_nodes import Client

pytestmark = pytest.mark.asyncio(loop_scope="module")

EXAMPLES = 170  # per test: three tests, ~500 transactions
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
SEND = "/_matrix/federation/v1/send/"
_txn = itertools.count()


class _Errors(logging.Handler):
    """Keeps the ERROR records logged under ``node`` (an exception in a handler)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass(frozen=True)
class Raw:
    """A request body sent as these bytes."""

    data: bytes


@dataclass(repr=False)
class Target:
    a: RunningNode
    b: RunningNode
    ca: Client
    cb: Client
    http: aiohttp.ClientSession
    room: str  # B is joined: the fuzzer's playground
    version: RoomVersion
    canary_room: str = ""  # A's own room, never named to the fuzzer
    canary_events: list[str] = field(default_factory=list)
    pdus: list[dict[str, Any]] = field(default_factory=list)  # valid, signed by B
    known: list[str] = field(default_factory=list)  # event IDs of the room, oldest first
    edus: list[dict[str, Any]] = field(default_factory=list)  # valid, from B
    errors: _Errors = field(default_factory=_Errors)
    sent: int = 0
    errors_before: int = 0  # errors logged before the latest request
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def a_name(self) -> str:
        return self.a.node.config.server_name

    @property
    def b_name(self) -> str:
        return self.b.node.config.server_name

    async def put(self, content: Any) -> tuple[int, Any, bytes]:
        """PUT /send to A, signed by B as Synapse would sign it (:class:`Raw`: those
        bytes, the signature over an empty body)."""
        uri = SEND + f"fuzz{next(_txn)}"
        key = self.b.node.server_key
        self.errors_before = len(self.errors.records)
        if isinstance(content, Raw):
            data, signed = content.data, b"{}"
        else:
            data, signed = self._encode(uri, content)
        sig = encode_base64(key.signing_key.sign(signed).signature)
        header = (
            f'X-Matrix origin="{self.b_name}",destination="{self.a_name}",'
            f'key="{key.key_id}",sig="{sig}"'
        )
        url = f"https://{self.a.listeners['federation']}{uri}"
        headers = {"Authorization": header, "Content-Type": "application/json"}
        self.sent += 1
        async with self.http.put(url, data=data, headers=headers) as resp:
            raw = await resp.read()
            self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            return resp.status, body, raw

    def _encode(self, uri: str, content: Any) -> tuple[bytes, bytes]:
        """The body and the signed request object, canonical as Synapse makes them."""
        try:
            data = canonicaljson.encode_canonical_json(content)
            signed = canonicaljson.encode_canonical_json(
                {
                    "method": "PUT",
                    "uri": uri,
                    "origin": self.b_name,
                    "destination": self.a_name,
                    "content": content,
                }
            )
        except (ValueError, TypeError, UnicodeError):  # not even JSON (NaN, surrogates)
            data = json.dumps(content, allow_nan=True).encode("utf-8", "surrogatepass")
            signed = b"{}"
        return data, signed

    def event_id(self, pdu: Mapping[str, Any]) -> str:
        return Event.from_pdu(pdu, self.version).event_id

    async def valid_pdu(
        self, body: str, event_type: str = "m.room.message", state_key: str | None = None
    ) -> dict[str, Any]:
        """A PDU from B's owner on A's current head: a message, or a state event whose
        content is ``{"topic": body}``."""
        head = await self.a.node.rooms.head(self.room)
        assert head is not None
        content = {"msgtype": "m.text", "body": body} if state_key is None else {"topic": body}
        event, _ = build_event(
            room_version=self.version,
            server_key=self.b.node.server_key,
            room_id=self.room,
            sender=self.cb.user_id,
            event_type=event_type,
            content=content,
            state_key=state_key,
            prev_events=head.extremities,
            state=head.state,
            origin_server_ts=int(time.time() * 1000),
        )
        return copy.deepcopy(dict(event.raw))

    def check(self, what: Any, status: int, body: Any, raw: bytes) -> None:
        shown = repr(what)[:400]
        assert status < 500, f"{shown} -> {status}: {raw[:300]!r}"
        assert isinstance(body, dict), f"{shown} -> {status}: {raw[:300]!r}"
        if status != 200:
            assert 400 <= status < 500 and str(body.get("errcode", "")).startswith("M_"), (
                shown,
                body,
            )
            return
        results = body.get("pdus")
        assert isinstance(results, dict), (shown, body)
        for event_id, result in results.items():
            error = result.get("error", "") if isinstance(result, dict) else "not an object"
            assert "could not process" not in error, (shown, event_id, error)
        new_errors = self.errors.records[self.errors_before :]
        assert not new_errors, [r.getMessage() for r in new_errors]


def _insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the node's certificate is self-signed
    return ctx


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzz_federation")
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=_insecure_context()), timeout=REQUEST_TIMEOUT
            )
        )
        nodes = []
        for name in ("a", "b"):
            running = await stack.enter_async_context(croft_node(tmp_path, name))
            # Fuzzed server names must never send a node past loopback.
            running.node.federation_client.resolver = LoopbackOnlyResolver()
            nodes.append(running)
        a, b = nodes
        ca, cb = Client(http, a), Client(http, b)
        await ca.login()
        await cb.login()
        room = (await ca.call("POST", "/createRoom", {"room_version": "12"}))["room_id"]
        await ca.call("POST", f"/rooms/{quote(room)}/invite", {"user_id": cb.user_id})
        await cb.sync_until(lambda r: r.get("rooms", {}).get("invite", {}).get(room))
        await cb.call(
            "POST", f"/join/{quote(room)}?server_name={quote(a.node.config.server_name)}", {}
        )
        t = Target(a, b, ca, cb, http, room, room_version("12"))
        t.canary_room = (await ca.call("POST", "/createRoom", {"name": "Canary"}))["room_id"]
        for i in range(3):
            t.canary_events.append(await ca.send(t.canary_room, f"canary {i}"))
        mark = await ca.send(room, "a message to read")
        t.pdus = [await t.valid_pdu(f"template {i}") for i in range(2)]
        t.pdus.append(await t.valid_pdu("fuzz", "m.room.topic", ""))
        t.edus = _valid_edus(t, mark)
        rows = await a.node.db.fetchall(
            "SELECT event_id FROM events WHERE room_id = ? ORDER BY stream_ordering", (room,)
        )
        t.known = [r[0] for r in rows]
        logging.getLogger("node").addHandler(t.errors)
        try:
            yield t
        finally:
            logging.getLogger("node").removeHandler(t.errors)
            print(f"fuzzer sent {t.sent} transactions; statuses {t.statuses}")


def _valid_edus(t: Target, mark: str) -> list[dict[str, Any]]:
    user = t.cb.user_id
    return [
        {"edu_type": "m.typing", "content": {"room_id": t.room, "user_id": user, "typing": True}},
        {
            "edu_type": "m.receipt",
            "content": {t.room: {"m.read": {user: {"event_ids": [mark], "data": {"ts": 1}}}}},
        },
        {
            "edu_type": "m.presence",
            "content": {"push": [{"user_id": user, "presence": "online", "last_active_ago": 5}]},
        },
        {
            "edu_type": "m.direct_to_device",
            "content": {
                "sender": user,
                "type": "m.fuzz",
                "message_id": "m1",
                "messages": {t.ca.user_id: {"*": {"hello": "there"}}},
            },
        },
        {
            "edu_type": "m.device_list_update",
            "content": {"user_id": user, "device_id": "FUZZ", "stream_id": 1, "deleted": False},
        },
        {"edu_type": "m.signing_key_update", "content": {"user_id": user}},
    ]


# -- strategies ---------------------------------------------------------------------------

JUNK_IDS = [
    "",
    "$",
    "!",
    "@",
    "$nope",
    "!nope:127.0.0.1:1",
    "@mallory:127.0.0.1:1",
    "@mallory:elsewhere.example",
    "@:",
    "x" * 300,
    "\u0000",
    "\u202e",
    "\U0001f600",
]
NASTY = [None, True, -1, 0, 2**53 - 1, -(2**53) + 1, "", [], {}, "x" * 70_000]
# Not canonical JSON: only a few transactions carry one.
NOT_CANONICAL = [2**53, -(2**53) - 1, 2**64, 1.5, 1e308]
RAW_BODIES = [
    b"",
    b"not json",
    b"\xff\xfe\x00garbage",
    b'{"pdus": NaN}',
    b'{"pdus": [Infinity]}',
    b'{"a": 1' + b"0" * 5000 + b"}",  # beyond Python's int digit limit
    b"[" * 100_000 + b"]" * 100_000,  # deeper than the recursion limit
    b'{"pdus": [], "edus": [], "origin": "\\ud800"}',  # a lone surrogate escape
    b'{"pdus": [], "pdus": [{}]}',
    b"\x00" * 64,
]


def _deep(n: int) -> Any:
    value: Any = "x"
    for _ in range(n):
        value = {"a": [value]}
    return value


def junk_text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(JUNK_IDS), st.text(max_size=12))


def junk_json(canonical: bool = True) -> st.SearchStrategy[Any]:
    """Any JSON value; with ``canonical``, only values canonical JSON allows (a request
    holding a float anywhere is refused whole: see test_hostile.py)."""
    limit = 2**53 - 1 if canonical else 2**70
    numbers = [-0.0] if canonical else [2**53, 1.5, -0.0, 1e308]
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-limit, max_value=limit),
        st.sampled_from(numbers),
        junk_text(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(junk_text(), inner, max_size=3)
        ),
        max_leaves=8,
    )


@st.composite
def mutated(draw: st.DrawFn, valid: Any, depth: int = 0) -> Any:
    """``valid`` with one thing broken, somewhere in it."""
    if not isinstance(valid, dict) or not valid or depth > 3:
        return draw(st.one_of(junk_json(), st.sampled_from(NASTY + NOT_CANONICAL[:1])))
    out = copy.deepcopy(valid)
    key = draw(st.sampled_from(sorted(out)))
    how = draw(st.sampled_from(["drop", "retype", "nasty", "id", "deep", "array", "inner", "add"]))
    if how == "drop":
        del out[key]
    elif how == "retype":
        out[key] = draw(junk_json())
    elif how == "nasty":
        out[key] = draw(st.sampled_from(NASTY))
    elif how == "id":
        out[key] = draw(st.sampled_from(JUNK_IDS))
    elif how == "deep":
        out[key] = _deep(draw(st.integers(min_value=50, max_value=300)))
    elif how == "array":
        out[key] = [out[key]] * draw(st.integers(min_value=1, max_value=30))
    elif how == "add":
        out[draw(junk_text())] = draw(junk_json())
    else:
        out[key] = draw(mutated(out[key], depth + 1))
    return out


def _known(n: int) -> Any:
    """``n`` events of the room's DAG (old ones make forks and so state resolution)."""
    return lambda draw, t: draw(st.lists(st.sampled_from(t.known), min_size=n, max_size=n))


# Edits that keep a PDU well-formed (it is re-signed after them): reach checks 4 to 6.
PDU_EDITS: list[tuple[str, Any]] = [
    ("prev_events", lambda draw, t: [f"$unknown{i}" for i in range(3)]),
    ("prev_events", lambda draw, t: []),
    ("prev_events", _known(1)),
    ("prev_events", _known(2)),
    ("auth_events", lambda draw, t: []),
    ("auth_events", lambda draw, t: ["$unknown"]),
    ("auth_events", _known(3)),
    ("depth", lambda draw, t: 2**53 - 1),
    ("depth", lambda draw, t: 0),
    ("type", lambda draw, t: "m.room.member"),
    ("type", lambda draw, t: "m.room.power_levels"),
    ("type", lambda draw, t: "m.room.create"),
    ("type", lambda draw, t: "m.room.redaction"),
    ("type", lambda draw, t: "m.room.server_acl"),
    ("state_key", lambda draw, t: ""),
    ("state_key", lambda draw, t: t.cb.user_id),
    ("content", lambda draw, t: {"membership": draw(st.sampled_from(["join", "leave", "ban"]))}),
    ("redacts", lambda draw, t: draw(st.sampled_from([*t.known, "$unknown"]))),
    ("sender", lambda draw, t: t.ca.user_id),
    ("origin_server_ts", lambda draw, t: 0),
    ("origin_server_ts", lambda draw, t: 2**53 - 1),
]


def resign(t: Target, pdu: Any) -> Any:
    """Re-hash and re-sign a (mutated) PDU with B's key, when that is possible."""
    if not isinstance(pdu, dict):
        return pdu
    try:
        unsigned = {k: v for k, v in pdu.items() if k not in ("hashes", "signatures")}
        hashed = add_content_hash(unsigned)
        return sign_event(hashed, t.b_name, t.b.node.server_key.signing_key, t.version)
    except (InvalidJson, ValueError, TypeError, KeyError, RecursionError):
        return pdu


@st.composite
def fuzzed_pdu(draw: st.DrawFn, t: Target) -> Any:
    valid = draw(st.sampled_from(t.pdus))
    kind = draw(
        st.sampled_from(["mutated", "mutated+resigned", "edited+resigned", "junk", "valid"])
    )
    if kind == "valid":
        return valid
    if kind == "junk":
        return draw(junk_json())
    if kind == "edited+resigned":
        out = copy.deepcopy(valid)
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            name, value = draw(st.sampled_from(PDU_EDITS))
            out[name] = value(draw, t)
        return resign(t, out)
    out = draw(mutated(valid))
    return resign(t, out) if kind == "mutated+resigned" else out


@st.composite
def fuzzed_edu(draw: st.DrawFn, t: Target) -> Any:
    valid = draw(st.sampled_from(t.edus))
    kind = draw(st.sampled_from(["mutated", "content", "junk", "valid"]))
    if kind == "junk":
        return draw(junk_json())
    if kind == "valid":
        return valid
    if kind == "content":
        return {**valid, "content": draw(mutated(valid["content"]))}
    return draw(mutated(valid))


def _body(t: Target, pdus: list[Any], edus: list[Any]) -> dict[str, Any]:
    return {
        "origin": t.b_name,
        "origin_server_ts": int(time.time() * 1000),
        "pdus": pdus,
        "edus": edus,
    }


# -- the tests ----------------------------------------------------------------------------


@FUZZ_SETTINGS
@given(data=st.data())
async def test_fuzz_transaction_shapes(target: Target, data: st.DataObject) -> None:
    """Bodies of any shape, and transactions whose fields are junk."""
    good = _body(target, [target.pdus[0]], [target.edus[0]])
    body = data.draw(
        st.one_of(
            junk_json(canonical=False),
            mutated(good),
            st.builds(lambda p: {**good, "pdus": p}, junk_json(canonical=False)),
            st.sampled_from(RAW_BODIES).map(Raw),
        )
    )
    status, answer, raw = await target.put(body)
    target.check(body, status, answer, raw)


@FUZZ_SETTINGS
@given(data=st.data())
async def test_fuzz_pdus(target: Target, data: st.DataObject) -> None:
    pdus = data.draw(st.lists(fuzzed_pdu(target), min_size=1, max_size=4))
    status, answer, raw = await target.put(_body(target, pdus, []))
    target.check(pdus, status, answer, raw)


@FUZZ_SETTINGS
@given(data=st.data())
async def test_fuzz_edus(target: Target, data: st.DataObject) -> None:
    edus = data.draw(st.lists(fuzzed_edu(target), min_size=1, max_size=6))
    pdus = data.draw(st.lists(fuzzed_pdu(target), max_size=1))
    status, answer, raw = await target.put(_body(target, pdus, edus))
    target.check(edus, status, answer, raw)


async def test_node_intact_after_fuzzing(target: Target) -> None:
    """Runs last: the store checks out, the canary room syncs, a valid PDU is taken."""
    assert target.sent >= 3 * EXAMPLES // 2, target.sent
    assert target.statuses.get(200, 0) > 0, target.statuses
    db = sqlite3.connect(f"file:{target.a.node.config.database_path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    async with target.http.get(
        f"https://{target.a.listeners['federation']}/_matrix/federation/v1/version"
    ) as resp:
        assert resp.status == 200
    room_filter = {"room": {"rooms": [target.canary_room], "timeline": {"limit": 50}}}
    synced = await target.ca.call(
        "GET", "/sync?timeout=0&filter=" + quote(json.dumps(room_filter), safe="")
    )
    timeline = synced["rooms"]["join"][target.canary_room]["timeline"]["events"]
    ids = [e["event_id"] for e in timeline]
    assert all(e in ids for e in target.canary_events), (target.canary_events, ids)

    good = await target.valid_pdu("after the fuzzing")
    status, answer, raw = await target.put(_body(target, [good], []))
    assert (status, answer) == (200, {"pdus": {target.event_id(good): {}}}), raw
    page = await target.ca.call("GET", f"/rooms/{quote(target.room)}/messages?dir=b&limit=5")
    assert target.event_id(good) in [e["event_id"] for e in page["chunk"]]
    assert not target.errors.records, [r.getMessage() for r in target.errors.records]
