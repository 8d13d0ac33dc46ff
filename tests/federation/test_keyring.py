"""The KeyRing between real nodes on loopback: fetching over TLS, caching, notaries."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from node.app import RunningNode
from node.events.hashing import add_content_hash
from node.events.room_versions import V11
from node.events.signing import SignatureError, generate_signing_key, sign_event
from node.federation.keyring import KeyNotFound, KeyRing, parse_key_document
from node.federation.keys import ServerKey
from node.federation.tls import create_self_signed_certificate
from tests.federation.nodes import croft_node, resolver_of
from tests.interop.util import free_port

DAY_MS = 24 * 3600 * 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def signed_event(key: ServerKey, ts: int, body: str = "hi") -> dict[str, Any]:
    pdu = {
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "sender": f"@bob:{key.server_name}",
        "content": {"msgtype": "m.text", "body": body},
        "origin_server_ts": ts,
        "depth": 3,
        "prev_events": [],
        "auth_events": [],
    }
    return sign_event(add_content_hash(pdu), key.server_name, key.signing_key, V11)


def name_of(running: RunningNode) -> str:
    return running.node.config.server_name


async def rows(running: RunningNode, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await running.node.db.fetchall(sql, params)]


async def test_fetches_a_remote_key_over_tls_and_caches_it(tmp_path: Path) -> None:
    async with croft_node(tmp_path, "a") as a, croft_node(tmp_path, "b") as b:
        b_key = b.node.server_key
        key = await a.node.keyring.get_verify_key(name_of(b), b_key.key_id, valid_at_ms=now_ms())
        assert key.encode() == b_key.signing_key.verify_key.encode()
        assert resolver_of(a).calls[name_of(b)] == 1
        await a.node.keyring.get_verify_key(name_of(b), b_key.key_id, valid_at_ms=now_ms())
        assert resolver_of(a).calls[name_of(b)] == 1  # cached
        stored = await rows(
            a,
            "SELECT k.key_id, k.verify_key, k.expired_ts, d.fetched_from"
            " FROM server_keys k JOIN server_key_documents d USING (doc_id)"
            " WHERE k.server_name = ?",
            name_of(b),
        )
        assert stored == [(b_key.key_id, b_key.verify_key_base64, None, name_of(b))]
        # A fresh key ring with no way to fetch finds it in the database.
        offline = KeyRing(a.node.db, a.node.server_key, None)
        again = await offline.get_verify_key(name_of(b), b_key.key_id, valid_at_ms=now_ms())
        assert again.encode() == key.encode()
        with pytest.raises(KeyNotFound):
            await offline.get_verify_key(name_of(b), "ed25519:other")


async def test_verifies_json_and_event_signatures(tmp_path: Path) -> None:
    async with croft_node(tmp_path, "a") as a, croft_node(tmp_path, "b") as b:
        ring, b_key, b_name = a.node.keyring, b.node.server_key, name_of(b)
        obj = b_key.sign({"hello": "world"})
        await ring.verify_json(obj, b_name)
        with pytest.raises(SignatureError, match="bad signature"):
            await ring.verify_json({**obj, "hello": "there"}, b_name)
        with pytest.raises(SignatureError, match="not signed"):
            await ring.verify_json(obj, name_of(a))

        event = signed_event(b_key, now_ms())
        await ring.verify_event_signatures(event, V11)
        # Content is not covered by the signature (redaction drops it), the type is.
        await ring.verify_event_signatures({**event, "content": {"body": "x"}}, V11)
        with pytest.raises(SignatureError, match=f"signature of {b_name}"):
            await ring.verify_event_signatures({**event, "type": "m.room.topic"}, V11)
        # Signed with a key B never published: no usable signature.
        stranger = ServerKey(b_name, generate_signing_key("stranger"))
        with pytest.raises(SignatureError, match="no usable signature"):
            await ring.verify_event_signatures(signed_event(stranger, now_ms()), V11)
        # Keys are used for at most 7 days after they are fetched (keys_server.yaml).
        with pytest.raises(SignatureError, match="valid until"):
            await ring.verify_event_signatures(signed_event(b_key, now_ms() + 8 * DAY_MS), V11)
        # Events from the past are fine.
        await ring.verify_event_signatures(signed_event(b_key, now_ms() - 300 * DAY_MS), V11)


async def test_own_keys_need_no_request(tmp_path: Path) -> None:
    async with croft_node(tmp_path, "a") as a:
        event = signed_event(a.node.server_key, now_ms())
        await a.node.keyring.verify_event_signatures(event, V11)
        await a.node.keyring.verify_json(a.node.server_key.sign({"x": 1}), name_of(a))
        assert sum(resolver_of(a).calls.values()) == 0


async def test_concurrent_lookups_share_one_fetch(tmp_path: Path) -> None:
    async with croft_node(tmp_path, "a") as a, croft_node(tmp_path, "b") as b:
        key_id = b.node.server_key.key_id
        keys = await asyncio.gather(
            *(a.node.keyring.get_verify_key(name_of(b), key_id) for _ in range(10))
        )
        assert len({k.encode() for k in keys}) == 1
        assert resolver_of(a).calls[name_of(b)] == 1


async def test_a_failed_fetch_is_not_repeated_for_a_minute(tmp_path: Path) -> None:
    async with croft_node(tmp_path, "a") as a, croft_node(tmp_path, "b") as b:
        clock = [time.time()]
        ring = KeyRing(
            a.node.db, a.node.server_key, a.node.federation_client, clock=lambda: clock[0]
        )
        dead = f"127.0.0.1:{free_port()}"  # nothing listens there
        calls = resolver_of(a).calls
        for _ in range(3):
            with pytest.raises(KeyNotFound):
                await ring.get_verify_key(dead, "ed25519:x")
        assert calls[dead] == 1
        # An unknown key ID of a live server is not asked about again either.
        for _ in range(3):
            with pytest.raises(KeyNotFound):
                await ring.get_verify_key(name_of(b), "ed25519:nope")
        assert calls[name_of(b)] == 1
        clock[0] += 61
        with pytest.raises(KeyNotFound):
            await ring.get_verify_key(dead, "ed25519:x")
        assert calls[dead] == 2


async def test_keys_through_a_notary(tmp_path: Path) -> None:
    """A asks the notary N for B's keys: A cannot reach B, N can."""
    async with (
        croft_node(tmp_path, "a") as a,
        croft_node(tmp_path, "n") as n,
        croft_node(tmp_path, "b") as b,
    ):
        b_name, b_key = name_of(b), b.node.server_key
        resolver_of(a).blocked.add(b_name)
        a.node.keyring.trusted_key_servers = (name_of(n),)
        await a.node.keyring.verify_event_signatures(signed_event(b_key, now_ms()), V11)
        assert resolver_of(a).calls[b_name] == 1  # tried directly first, blocked
        assert resolver_of(n).calls[b_name] == 1  # the notary fetched it
        stored = await rows(
            a,
            "SELECT k.key_id, d.fetched_from, d.document FROM server_keys k"
            " JOIN server_key_documents d USING (doc_id) WHERE k.server_name = ?",
            b_name,
        )
        assert [(s[0], s[1]) for s in stored] == [(b_key.key_id, name_of(n))]
        # What is stored is B's own document, without the notary's signature.
        assert '"signatures":{"' + b_name + '":' in stored[0][2]
        assert name_of(n) not in stored[0][2]


# -- a notary that lies --------------------------------------------------------------


class FakeNotary:
    """A key server on 127.0.0.1 with its own key, answering /query with ``answer()``."""

    def __init__(self, port: int, answer: Callable[[ServerKey], list[dict[str, Any]]]) -> None:
        self.key = ServerKey(f"127.0.0.1:{port}", generate_signing_key("notary"))
        self.port = port
        self.answer = answer


@pytest.fixture
async def fake_notary(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def start(answer: Callable[[ServerKey], list[dict[str, Any]]]) -> FakeNotary:
        notary = FakeNotary(free_port(), answer)
        cert, key = tmp_path / f"n{notary.port}.crt", tmp_path / f"n{notary.port}.key"
        create_self_signed_certificate("127.0.0.1", cert, key)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))

        async def server(_: web.Request) -> web.Response:
            return web.json_response(notary.key.key_document())

        async def query(_: web.Request) -> web.Response:
            return web.json_response({"server_keys": notary.answer(notary.key)})

        app = web.Application()
        app.router.add_get("/_matrix/key/v2/server", server)
        app.router.add_post("/_matrix/key/v2/query", query)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", notary.port, ssl_context=ctx).start()
        return notary

    yield start
    for runner in runners:
        await runner.cleanup()


def forged(doc: dict[str, Any], notary: str, key: ServerKey) -> dict[str, Any]:
    """``doc`` with a signature under the notary's name and key ID made by ``key``."""
    sig = key.sign(doc)["signatures"][key.server_name]
    return {**doc, "signatures": {**doc["signatures"], notary: sig}}


async def test_notary_answers_must_carry_both_signatures(
    tmp_path: Path, fake_notary: Callable[..., Any]
) -> None:
    b_key = ServerKey(f"127.0.0.1:{free_port()}", generate_signing_key("bkey"))  # offline
    b_doc = b_key.key_document()
    mallory = ServerKey(b_key.server_name, generate_signing_key("bkey"))  # same ID, other key
    other = ServerKey("127.0.0.1:1", generate_signing_key("notary"))
    cases: dict[str, Callable[[ServerKey], list[dict[str, Any]]]] = {
        "unsigned by the notary": lambda nk: [b_doc],
        "signed by another key": lambda nk: [forged(b_doc, nk.server_name, other)],
        "not signed by the server": lambda nk: [
            nk.sign({k: v for k, v in b_doc.items() if k != "signatures"})
        ],
        "key swapped after signing": lambda nk: [
            nk.sign({**b_doc, "verify_keys": mallory.key_document()["verify_keys"]})
        ],
        "about another server": lambda nk: [nk.sign(other.key_document())],
    }
    async with croft_node(tmp_path, "a") as a:
        for case, answer in cases.items():
            notary = await fake_notary(answer)
            ring = KeyRing(
                a.node.db, a.node.server_key, a.node.federation_client, [notary.key.server_name]
            )
            with pytest.raises(KeyNotFound):
                await ring.get_verify_key(b_key.server_name, b_key.key_id)
                pytest.fail(case)
            stored = await rows(
                a, "SELECT * FROM server_keys WHERE server_name = ?", b_key.server_name
            )
            assert stored == [], case
        # The control: the server's document, countersigned by the notary.
        notary = await fake_notary(lambda nk: [nk.sign(b_doc)])
        ring = KeyRing(
            a.node.db, a.node.server_key, a.node.federation_client, [notary.key.server_name]
        )
        key = await ring.get_verify_key(b_key.server_name, b_key.key_id)
        assert key.encode() == b_key.signing_key.verify_key.encode()


def test_parse_key_document() -> None:
    key = ServerKey("s.example", generate_signing_key("k"))
    doc = key.key_document(now_ms=1000)
    parsed = parse_key_document(doc, "s.example")
    assert parsed.valid_until_ts == 1000 + DAY_MS
    assert list(parsed.verify_keys) == [key.key_id]
    bad = [
        ([], "not a JSON object"),
        ({**doc, "server_name": "t.example"}, "not s.example"),
        ({**doc, "valid_until_ts": "soon"}, "valid_until_ts"),
        ({**doc, "verify_keys": []}, "verify_keys is not an object"),
        ({**doc, "signatures": {}}, "not signed by s.example"),
        ({**doc, "valid_until_ts": 5}, "bad signature"),
        ({**doc, "verify_keys": {}}, "not signed by any"),
    ]
    for value, problem in bad:
        with pytest.raises(ValueError, match=problem):
            parse_key_document(value, "s.example")
    # Other algorithms and malformed entries are skipped, not fatal.
    extra = key.sign(
        {
            **{k: v for k, v in doc.items() if k != "signatures"},
            "old_verify_keys": {
                "ed25519:old": {"key": key.verify_key_base64},  # no expired_ts
                "curve:x": {"key": "abc", "expired_ts": 1},
            },
        }
    )
    assert parse_key_document(extra, "s.example").old_verify_keys == {}
