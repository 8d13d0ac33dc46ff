"""GET /_matrix/key/v2/server and the notary endpoints /_matrix/key/v2/query, on real
nodes over TLS; documents cross-checked with matrix-org's signedjson."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import signedjson.key
import signedjson.sign

from node.app import RunningNode
from node.federation.key_server import parse_query_body
from tests.federation.nodes import croft_node, resolver_of
from tests.interop.util import free_port

DAY_MS = 24 * 3600 * 1000


def url(running: RunningNode, path: str) -> str:
    return f"https://{running.node.config.server_name}{path}"


def check_signed(doc: dict[str, Any], signer: str, key_id: str, key_b64: str) -> None:
    """signedjson's verification of ``signer``'s signature on ``doc``."""
    alg, _, version = key_id.partition(":")
    vk = signedjson.key.decode_verify_key_base64(alg, version, key_b64)
    signedjson.sign.verify_signed_json(doc, signer, vk)


def check_self_signed(doc: dict[str, Any]) -> None:
    name = doc["server_name"]
    for key_id, entry in doc["verify_keys"].items():
        check_signed(doc, name, key_id, entry["key"])


async def get(http: aiohttp.ClientSession, address: str) -> tuple[int, Any]:
    async with http.get(address) as resp:
        return resp.status, await resp.json()


async def post(http: aiohttp.ClientSession, address: str, body: Any) -> tuple[int, Any]:
    kw: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with http.post(address, **kw) as resp:
        return resp.status, await resp.json()


async def test_published_key_document(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with croft_node(tmp_path, "a") as a:
        key = a.node.server_key
        before = int(time.time() * 1000)
        for path in ("/_matrix/key/v2/server", f"/_matrix/key/v2/server/{key.key_id}"):
            status, doc = await get(http, url(a, path))
            assert status == 200
            assert doc["server_name"] == key.server_name
            assert doc["verify_keys"] == {key.key_id: {"key": key.verify_key_base64}}
            assert doc["old_verify_keys"] == {}
            assert doc["valid_until_ts"] >= before + 3600 * 1000  # spec: not under an hour
            check_self_signed(doc)
            doc["valid_until_ts"] += 1
            with pytest.raises(signedjson.sign.SignatureVerifyException):
                check_self_signed(doc)


async def test_notary_serves_its_own_and_verified_keys(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with croft_node(tmp_path, "n") as n, croft_node(tmp_path, "b") as b:
        n_key, b_key = n.node.server_key, b.node.server_key
        n_name, b_name = n_key.server_name, b_key.server_name

        # Its own keys.
        status, answer = await get(http, url(n, f"/_matrix/key/v2/query/{n_name}"))
        assert status == 200
        (doc,) = answer["server_keys"]
        assert doc["server_name"] == n_name
        check_self_signed(doc)

        # Another server's: fetched from it, its signature kept, the notary's added.
        body = {"server_keys": {b_name: {b_key.key_id: {"minimum_valid_until_ts": 0}}}}
        status, answer = await post(http, url(n, "/_matrix/key/v2/query"), body)
        assert status == 200
        (doc,) = answer["server_keys"]
        assert doc["verify_keys"] == {b_key.key_id: {"key": b_key.verify_key_base64}}
        assert set(doc["signatures"]) == {b_name, n_name}
        check_self_signed(doc)
        check_signed(doc, n_name, n_key.key_id, n_key.verify_key_base64)
        assert resolver_of(n).calls[b_name] == 1

        # Served again from storage, with no new fetch, in both forms.
        status, again = await get(http, url(n, f"/_matrix/key/v2/query/{b_name}"))
        assert status == 200 and again["server_keys"][0]["verify_keys"] == doc["verify_keys"]
        status, again = await post(
            http, url(n, "/_matrix/key/v2/query"), {"server_keys": {b_name: {}}}
        )
        assert status == 200 and len(again["server_keys"]) == 1
        assert resolver_of(n).calls[b_name] == 1

    # B is gone. Asked for keys valid further than it stored, the notary tries B again
    # and, failing, answers with what it has (keys_server.yaml: notaries "should
    # continue to return the last response they received").
    async with croft_node(tmp_path, "n", port=int(n_name.rsplit(":", 1)[1])) as n:
        later = int(time.time() * 1000) + 30 * DAY_MS
        status, answer = await get(
            http, url(n, f"/_matrix/key/v2/query/{b_name}?minimum_valid_until_ts={later}")
        )
        assert status == 200
        (doc,) = answer["server_keys"]
        check_self_signed(doc)
        check_signed(doc, n_name, n_key.key_id, n_key.verify_key_base64)
        assert resolver_of(n).calls[b_name] == 1  # it did try


async def test_notary_query_for_an_unreachable_unknown_server(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with croft_node(tmp_path, "n") as n:
        dead = f"127.0.0.1:{free_port()}"
        status, answer = await get(http, url(n, f"/_matrix/key/v2/query/{dead}"))
        assert (status, answer) == (200, {"server_keys": []})
        status, answer = await post(
            http, url(n, "/_matrix/key/v2/query"), {"server_keys": {dead: {"ed25519:x": {}}}}
        )
        assert (status, answer) == (200, {"server_keys": []})
        status, answer = await post(http, url(n, "/_matrix/key/v2/query"), {"server_keys": {}})
        assert (status, answer) == (200, {"server_keys": []})


async def test_bad_notary_queries(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with croft_node(tmp_path, "n") as n:
        query = url(n, "/_matrix/key/v2/query")
        cases: list[tuple[Any, int, str]] = [
            (b"{not json", 400, "M_NOT_JSON"),
            ([], 400, "M_BAD_JSON"),
            ({}, 400, "M_BAD_JSON"),
            ({"server_keys": []}, 400, "M_BAD_JSON"),
            ({"server_keys": {"a.example": []}}, 400, "M_BAD_JSON"),
            ({"server_keys": {"a.example": {"ed25519:k": 5}}}, 400, "M_BAD_JSON"),
            (
                {"server_keys": {"a.example": {"ed25519:k": {"minimum_valid_until_ts": "x"}}}},
                400,
                "M_BAD_JSON",
            ),
            ({"server_keys": {f"s{i}.example": {} for i in range(101)}}, 400, "M_BAD_JSON"),
        ]
        for body, status, errcode in cases:
            got_status, answer = await post(http, query, body)
            assert (got_status, answer.get("errcode")) == (status, errcode), body
        status, answer = await get(
            http, url(n, "/_matrix/key/v2/query/a.example?minimum_valid_until_ts=soon")
        )
        assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")
        status, answer = await get(http, url(n, "/_matrix/key/v2/query/not%20a%20name"))
        assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")


def test_parse_query_body() -> None:
    body = {
        "server_keys": {
            "a.example": {"ed25519:1": {"minimum_valid_until_ts": 5}, "ed25519:2": {}},
            "b.example": {},
            "bad name!": {},
        }
    }
    assert parse_query_body(body, 100) == {
        "a.example": (["ed25519:1", "ed25519:2"], 100),
        "b.example": ([], 100),
    }
    body = {"server_keys": {"a.example": {"ed25519:1": {"minimum_valid_until_ts": 500}}}}
    assert parse_query_body(body, 100) == {"a.example": (["ed25519:1"], 500)}
