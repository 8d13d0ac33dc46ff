"""Property-based fuzzing of the client-server API (issue "The client-server API":
bad input, tried systematically, is never a 500, always a 4xx with a Matrix errcode,
and the store stays intact).

Every client-server operation of the spec (``<repo>/../shared/spec``, loaded through
:mod:`tests.openapi.spec`) that Croft routes is fuzzed with hypothesis against one real
node per module: request bodies generated from the operation's request schema and
mutations of them (wrong types, missing required fields, huge strings, deep nesting,
``NaN``, huge integers, unicode edge cases, non-JSON and non-UTF-8 bytes, arrays instead
of objects), and garbage path parameters and query strings.  The operations Croft does
not route (404 M_UNRECOGNIZED, found by probing each once) are skipped, as are the two
that end the session by design (logout, logout/all).  The last test checks the store:
``PRAGMA integrity_check``, the owner's login, and a room made before the fuzzing.

Examples are derandomized (reproducible in CI); the run is bounded by
``EXAMPLES`` per operation and a per-request timeout.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import quote, urljoin

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from referencing._core import Resolver
from yarl import URL

from node.app import RunningNode
from tests.conftest import OWNER, PASSWORD, SERVER_NAME
from tests.openapi.spec import (
    CLIENT_SERVER,
    Operation,
    _registry,
    operations,
    spec_available,
)

if not spec_available():
    pytest.skip(
        f"Matrix spec not found at {CLIENT_SERVER} (CI checks shared/ out beside the repo)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.asyncio(loop_scope="module")

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"
V3 = "/_matrix/client/v3"
EXAMPLES = 40  # per operation
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
# Ending the session is what these do when they succeed; the fuzzer needs its token.
EXCLUDED = {("POST", V3 + "/logout"), ("POST", V3 + "/logout/all")}
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _all_operations() -> dict[tuple[str, str], Operation]:
    """The spec's operations, de-duplicated (a few path keys carry a trailing space)."""
    if not spec_available():
        return {}
    ops: dict[tuple[str, str], Operation] = {}
    for (method, path), op in sorted(operations().items()):
        key = (method, path.strip())
        if method in ("GET", "PUT", "POST", "DELETE") and key not in EXCLUDED:
            ops.setdefault(key, op)
    return ops


OPS = _all_operations()


# --- the node's state, shared by the module ---------------------------------------


@dataclass(repr=False)
class State:
    http: aiohttp.ClientSession
    base: str
    token: str = ""
    room_id: str = ""  # the playground: the fuzzer may use (and wreck) it
    event_id: str = ""
    canary_room: str = ""  # never named to the fuzzer; checked at the end
    canary_events: list[str] = field(default_factory=list)
    routed: set[tuple[str, str]] = field(default_factory=set)
    sent: int = 0

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes | None = None,
        auth: bool = True,
    ) -> tuple[int, bytes, str]:
        url = self.base + path + (f"?{query}" if query else "")
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        self.sent += 1
        async with self.http.request(
            method, URL(url, encoded=True), data=body, headers=headers, timeout=REQUEST_TIMEOUT
        ) as r:
            return r.status, await r.read(), r.content_type

    async def json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        status, raw, _ = await self.request(method, path, body=data, **kw)
        assert status == 200, (method, path, status, raw[:500])
        return json.loads(raw)


def assert_matrix_response(what: str, status: int, raw: bytes, content_type: str) -> None:
    """Never a 5xx; a 4xx is a Matrix error (JSON object, ``M_*`` errcode, ``error``),
    or a user-interactive auth challenge."""
    assert status < 500, f"{what} -> {status}: {raw[:300]!r}"
    if 400 <= status < 500:
        assert content_type == "application/json", f"{what} -> {status} {content_type}"
        body = json.loads(raw)
        assert isinstance(body, dict), f"{what} -> {status}: {body!r}"
        if status == 401 and "flows" in body and "errcode" not in body:
            return  # a user-interactive auth challenge (its first 401 has no errcode)
        errcode = body.get("errcode")
        assert isinstance(errcode, str) and errcode.startswith("M_"), f"{what} -> {body!r}"
        assert isinstance(body.get("error"), str), f"{what} -> {body!r}"


PROBE_VALUES = {"kind": "override", "keyName": "displayname", "receiptType": "m.read"}


def probe_path(template: str, op: Operation) -> str:
    """The path with harmless placeholder parameters (nothing real is named)."""
    path = template
    for name in path_params(op):
        value = PROBE_VALUES.get(name, "probe-" + name)
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def state(fuzz_node: RunningNode, fuzz_http: aiohttp.ClientSession, fuzz_url: str) -> State:
    s = State(fuzz_http, fuzz_url)
    login = await s.json("POST", V3 + "/login", LOGIN, auth=False)
    s.token = login["access_token"]
    s.canary_room = (await s.json("POST", V3 + "/createRoom", {"name": "Canary"}))["room_id"]
    for i in range(3):
        sent = await s.json(
            "PUT",
            f"{V3}/rooms/{quote(s.canary_room)}/send/m.room.message/canary-{i}",
            {"msgtype": "m.text", "body": f"canary {i}"},
        )
        s.canary_events.append(sent["event_id"])
    s.room_id = (await s.json("POST", V3 + "/createRoom", {"name": "Playground"}))["room_id"]
    sent = await s.json(
        "PUT",
        f"{V3}/rooms/{quote(s.room_id)}/send/m.room.message/play-1",
        {"msgtype": "m.text", "body": "hello"},
    )
    s.event_id = sent["event_id"]
    # Probe each operation once, with placeholder parameters and a non-JSON body (a
    # routed handler rejects it; nothing is changed): 404/405 M_UNRECOGNIZED = unrouted.
    for (method, template), op in OPS.items():
        body = b"probe: not json" if method in ("PUT", "POST") else None
        status, raw, ctype = await s.request(method, probe_path(template, op), body=body)
        assert_matrix_response(f"probe {method} {template}", status, raw, ctype)
        if status in (404, 405) and json.loads(raw).get("errcode") == "M_UNRECOGNIZED":
            continue
        s.routed.add((method, template))
    return s


LOGIN = {
    "type": "m.login.password",
    "identifier": {"type": "m.id.user", "user": OWNER},
    "password": PASSWORD,
    "device_id": "FUZZ",
}


# --- strategies -------------------------------------------------------------------

UNICODE_EDGES = [
    "",
    " ",
    "\x00",
    "\ud800",  # a lone surrogate: not encodable as UTF-8
    "\ufeff",
    "\u202e",
    "🏳️‍🌈",
    "e\u0301",
    "\U0010ffff",
    "ﷺ" * 50,
    "null",
    "NaN",
    "-Infinity",
    "1e999",
    "-0",
    "9" * 40,
    "0x10",
    "true",
    "[]",
    "{}",
    "../../etc/passwd",
    "' OR 1=1 --",
    "%s%n",
]
JUNK_IDS = [
    "!",
    "!:",
    "!nope:nowhere",
    "!x:" + SERVER_NAME,
    "$",
    "$nope",
    "$x:" + SERVER_NAME,
    "@",
    "@:",
    "@" + OWNER,
    "@nobody:" + SERVER_NAME,
    "@UPPER:" + SERVER_NAME,
    "#",
    "#nope:nowhere",
    "#:" + SERVER_NAME,
    "!" + "a" * 300 + ":" + SERVER_NAME,
    "@a:b:c:d",
    "@a:[::1]:99999",
]
# Sent as is in the URL (already percent-encoded, or deliberately broken encodings).
RAW_SEGMENTS = ["%zz", "%", "%00", "%2F", "..", "%2e%2e", "%C0%AF", "%FF%FE", "%F0%9F", "a%20b"]
# URL values stay under aiohttp's request-line limit (8190 bytes): beyond it the
# HTTP parser itself answers a plain-text 400 before any handler runs.
# JSON-ish text for parameters that carry JSON (``filter``): deep, huge, non-finite.
JSON_TEXT = [
    # Deeper than the recursion limit, even the raised one hypothesis runs tests under
    # (the node shares the test's thread).
    '{"a":' + "[" * 3500 + "]" * 3500 + "}",
    '{"room":{"timeline":{"types":' + "[" * 3400 + "]" * 3400 + "}}}",
    '{"room":{"timeline":{"limit":1' + "0" * 5000 + "}}}",
    '{"room":{"timeline":{"limit":NaN}}}',
    '{"room":{"timeline":{"limit":1e999}}}',
    '{"room":{"rooms":"!x"}}',
    '{"room":{"timeline":{"types":[1,{}]}}}',
    '{"event_fields":[{}]}',
    "{",
    "[]",
]
HUGE = "x" * 2000
MAX_URL = 7800  # + method and HTTP version < 8190


def junk_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(UNICODE_EDGES + JUNK_IDS),
        st.text(max_size=20),
        st.just(HUGE),
    )


def junk_json() -> st.SearchStrategy[Any]:
    """Any JSON value, with edge-case scalars."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([2**53, -(2**53) - 1, 2**63, 10**30, 1.5, -0.0, 1e308]),
        junk_text(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(junk_text(), inner, max_size=3)
        ),
        max_leaves=8,
    )


@dataclass(frozen=True)
class Schema:
    contents: Any
    resolver: Resolver[Any]


def _deref(schema: Schema) -> Schema:
    contents, resolver = schema.contents, schema.resolver
    while isinstance(contents, dict) and "$ref" in contents:
        resolved = resolver.lookup(contents["$ref"])
        contents, resolver = resolved.contents, resolved.resolver
    return Schema(contents, resolver)


def from_schema(schema: Schema, depth: int = 0) -> st.SearchStrategy[Any]:
    """A (loose) strategy for values valid against a JSON schema: enough to get past the
    first checks of a handler so the mutations reach the deeper ones."""
    schema = _deref(schema)
    s = schema.contents
    if not isinstance(s, dict) or depth > 5:
        return junk_json()
    sub = lambda c: from_schema(Schema(c, schema.resolver), depth + 1)  # noqa: E731
    if "const" in s:
        return st.just(s["const"])
    if "enum" in s:
        return st.sampled_from(s["enum"])
    for key in ("oneOf", "anyOf"):
        if key in s:
            return st.one_of([sub(c) for c in s[key]])
    if "allOf" in s:
        # Merge the parts' properties, each keeping the resolver of the file it is in.
        merged: dict[str, Schema] = {}
        required: list[str] = list(s.get("required", []))
        for part in [*s["allOf"], {k: v for k, v in s.items() if k != "allOf"}]:
            p = _deref(Schema(part, schema.resolver))
            if isinstance(p.contents, dict):
                for name, prop in p.contents.get("properties", {}).items():
                    merged[name] = Schema(prop, p.resolver)
                required += p.contents.get("required", [])
        return _object(merged, required, depth)
    kind = s.get("type")
    if isinstance(kind, list):
        return st.one_of([sub({**s, "type": k}) for k in kind])
    if kind == "object" or "properties" in s:
        extra = s.get("additionalProperties")
        if isinstance(extra, dict) and not s.get("properties"):
            return st.dictionaries(st.text(max_size=12), sub(extra), max_size=3)
        props = {k: Schema(v, schema.resolver) for k, v in s.get("properties", {}).items()}
        return _object(props, s.get("required", []), depth)
    if kind == "array":
        items = s.get("items")
        return st.lists(sub(items) if isinstance(items, dict) else junk_json(), max_size=3)
    if kind == "string":
        return st.one_of(st.text(max_size=20), st.sampled_from(JUNK_IDS))
    if kind == "integer":
        return st.integers(min_value=-10, max_value=10**6)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return junk_json()


def _object(
    props: dict[str, Schema], required: list[str], depth: int
) -> st.SearchStrategy[dict[str, Any]]:
    must = {k: from_schema(v, depth + 1) for k, v in props.items() if k in required}
    optional = {k: from_schema(v, depth + 1) for k, v in props.items() if k not in required}
    return st.fixed_dictionaries(must, optional=optional)


def request_schema(op: Operation) -> Schema | None:
    body = op.document.get("requestBody")
    if body is None:
        return None
    base = f"{op.uri}#{op.pointer}/requestBody"
    resolved = _registry().resolver().lookup(base)
    obj, resolver = resolved.contents, resolved.resolver
    while isinstance(obj, dict) and "$ref" in obj:
        resolved = resolver.lookup(obj["$ref"])
        obj, resolver = resolved.contents, resolved.resolver
    content = (obj or {}).get("content", {}).get("application/json", {})
    if "schema" not in content:
        return None
    return Schema(content["schema"], resolver)


@cache
def parameters(op: Operation) -> list[dict[str, Any]]:
    resolver = _registry().resolver()
    out: list[dict[str, Any]] = []
    for p in op.document.get("parameters", []):
        if "$ref" in p:
            p = resolver.lookup(urljoin(op.uri, p["$ref"])).contents
        out.append(p)
    return out


def path_params(op: Operation) -> list[str]:
    return [p["name"] for p in parameters(op) if p.get("in") == "path"]


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    """``valid`` with one thing broken: a field dropped, retyped, blown up or nested."""
    if not isinstance(valid, dict) or not valid:
        return draw(junk_json())
    key = draw(st.sampled_from(sorted(valid)))
    how = draw(st.sampled_from(["drop", "retype", "huge", "deep", "array", "inner"]))
    out = dict(valid)
    if how == "drop":
        del out[key]
    elif how == "retype":
        out[key] = draw(junk_json())
    elif how == "huge":
        out[key] = "\u00e9" * 70_000
    elif how == "deep":
        deep: Any = "x"
        for _ in range(200):
            deep = {"a": [deep]}
        out[key] = deep
    elif how == "array":
        out[key] = [out[key]]
    else:
        out[key] = draw(mutated(out[key]))
    return out


RAW_BODIES = [
    b"",
    b"not json",
    b"\xff\xfe\x00garbage",
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": -Infinity}',
    b'{"a": 1' + b"0" * 5000 + b"}",  # int beyond Python's str-to-int digit limit
    b"[" * 100_000 + b"]" * 100_000,  # deeper than the recursion limit
    b'{"a": "\\ud800"}',  # a lone surrogate escape
    b'{"a": 1, "a": 2}',
    b"{" * 3,
    b"\x00" * 64,
]


def body_strategy(op: Operation) -> st.SearchStrategy[bytes | None]:
    schema = request_schema(op)
    valid = from_schema(schema) if schema is not None else st.just({})

    def encode(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")

    return st.one_of(
        valid.map(encode),
        valid.flatmap(mutated).map(encode),
        junk_json().map(encode),
        st.sampled_from(RAW_BODIES),
        st.none(),
    )


def valid_param(name: str, state: State) -> list[str]:
    """Plausible values for a parameter, so the fuzzing reaches past the ID checks."""
    n = name.lower()
    if n in ("roomid", "roomidoralias", "room_id"):
        return [state.room_id]
    if n == "eventid":
        return [state.event_id]
    if n in ("userid", "user_id"):
        return [OWNER_ID]
    if n in ("roomalias", "alias"):
        return [f"#fuzz:{SERVER_NAME}"]
    if n == "servername" or n == "server":
        return [SERVER_NAME]
    if n == "eventtype":
        return ["m.room.message", "m.room.topic", "m.room.power_levels"]
    if n == "statekey":
        return ["", OWNER_ID]
    if n == "kind":
        return ["override", "content", "room", "sender", "underride"]
    if n == "ruleid":
        return [".m.rule.master", "fuzz"]
    if n in ("from", "to", "since", "next_batch", "at"):
        return []  # pagination tokens: none is known-good

    if n == "keyname":
        return ["displayname", "avatar_url", "m.tz"]
    if n == "deviceid":
        return ["FUZZ", "NOPE"]
    if n == "receipttype":
        return ["m.read", "m.read.private", "m.fully_read"]
    if n in ("limit", "ts", "width", "height", "max_depth"):
        return ["0", "1", "10", "-1", "9" * 30]
    if n in ("dir",):
        return ["b", "f"]
    return ["fuzz"]


def is_timeout(name: str) -> bool:
    return "timeout" in name.lower()


def value_strategy(name: str, state: State, broken: bool) -> st.SearchStrategy[str]:
    """An already percent-encoded value for a path segment or a query parameter:
    plausible, or (``broken``) junk."""
    if is_timeout(name):  # a real long-poll would only burn the time budget
        return st.sampled_from(["0", "1", "-1", "abc", "1e3", "", "%zz"])
    if "filter" in name.lower():
        # JSON in the URL: sound filters, and JSON_TEXT at any time (brackets unescaped,
        # so that deep nesting fits in the request line).
        good = ["{}", '{"room":{"timeline":{"limit":5}}}', "0"]
        return st.sampled_from(good + JSON_TEXT).map(lambda v: quote(v, safe="[]"))
    valid = st.sampled_from(valid_param(name, state) or ["fuzz"]).map(lambda v: quote(v, safe=""))
    if not broken:
        return valid
    junk = st.one_of(
        junk_text().map(lambda v: quote(v, safe="", errors="surrogatepass")),
        st.sampled_from(RAW_SEGMENTS),
    )
    return junk


@st.composite
def request_strategy(
    draw: st.DrawFn, method: str, template: str, op: Operation, state: State
) -> tuple[str, str, bytes | None]:
    """A request with a few things broken: some parameters junk, the rest plausible (so
    the junk gets past the first checks), and a generated or mutated body."""
    names = path_params(op)
    query_params = [p for p in parameters(op) if p.get("in") == "query"]
    required = [p["name"] for p in query_params if p.get("required")]
    optional = [p["name"] for p in query_params if not p.get("required")]
    chosen = required + (draw(st.lists(st.sampled_from(optional), unique=True)) if optional else [])
    everything = names + chosen
    broken = draw(st.sets(st.sampled_from(everything), max_size=1)) if everything else set()
    # An optional parameter with no known-good value is only sent when it is the junk.
    chosen = [n for n in chosen if n in required or n in broken or valid_param(n, state)]
    path = template
    for name in names:
        value = draw(value_strategy(name, state, name in broken))
        path = path.replace("{" + name + "}", value)
    pairs = [(quote(n), draw(value_strategy(n, state, n in broken))) for n in chosen]
    if draw(st.booleans()):
        pairs.append((draw(st.sampled_from(["x", "%zz", "a[]", ""])), "%00"))
    query = "&".join(f"{k}={v}" for k, v in pairs)
    assume(len(path) + len(query) < MAX_URL)
    body = draw(body_strategy(op)) if method in ("PUT", "POST", "DELETE") else None
    return path, query, body


# --- the tests --------------------------------------------------------------------


@pytest.mark.parametrize("key", list(OPS), ids=[f"{m} {p}" for m, p in OPS])
@FUZZ_SETTINGS
@given(data=st.data())
async def test_fuzz_operation(state: State, key: tuple[str, str], data: st.DataObject) -> None:
    if key not in state.routed:
        pytest.skip("not routed by Croft (404 M_UNRECOGNIZED)")
    method, template = key
    path, query, body = data.draw(request_strategy(method, template, OPS[key], state))
    status, raw, ctype = await state.request(method, path, query=query, body=body)
    shown = f"{method} {path[:200]}?{query[:200]} body={(body or b'')[:200]!r}"
    assert_matrix_response(shown, status, raw, ctype)


async def test_store_intact_after_fuzzing(state: State, fuzz_node: RunningNode) -> None:
    """Runs last: the database checks out, the owner logs in, the canary room syncs."""
    assert state.routed, "no operation was routed"
    db = sqlite3.connect(f"file:{fuzz_node.node.config.database_path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    login = await state.json("POST", V3 + "/login", {**LOGIN, "device_id": "AFTER"}, auth=False)
    state.token = login["access_token"]
    room_filter = {"room": {"rooms": [state.canary_room], "timeline": {"limit": 50}}}
    synced = await state.json(
        "GET", V3 + "/sync", query="filter=" + quote(json.dumps(room_filter), safe="")
    )
    timeline = synced["rooms"]["join"][state.canary_room]["timeline"]["events"]
    ids = [e["event_id"] for e in timeline]
    assert all(e in ids for e in state.canary_events), (state.canary_events, ids)
    print(f"fuzzer sent {state.sent} requests to {len(state.routed)} routed operations")
