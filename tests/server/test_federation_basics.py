"""The federation listener: TLS, the signed key document, the version endpoint."""

from __future__ import annotations

import time

import aiohttp
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from node.app import RunningNode
from tests.conftest import SERVER_NAME


async def test_key_document_verifies_with_signedjson(
    federation_url: str, http: aiohttp.ClientSession, node: RunningNode
) -> None:
    async with http.get(f"{federation_url}/_matrix/key/v2/server") as r:
        assert r.status == 200
        doc = await r.json()
    assert doc["server_name"] == SERVER_NAME
    assert doc["valid_until_ts"] > time.time() * 1000
    assert doc["old_verify_keys"] == {}
    [(key_id, key)] = doc["verify_keys"].items()
    assert key_id == node.node.server_key.key_id
    verify_key = decode_verify_key_bytes(key_id, decode_base64(key["key"]))
    verify_signed_json(doc, SERVER_NAME, verify_key)  # raises if the signature is wrong
    doc["valid_until_ts"] += 1
    try:
        verify_signed_json(doc, SERVER_NAME, verify_key)
    except SignatureVerifyException:
        pass
    else:
        raise AssertionError("a tampered key document still verified")


async def test_federation_version(federation_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{federation_url}/_matrix/federation/v1/version") as r:
        assert r.status == 200
        body = await r.json()
    assert body["server"]["name"] == "Croft"


async def test_federation_listener_speaks_only_tls(node: RunningNode) -> None:
    plain = f"http://{node.listeners['federation']}/_matrix/federation/v1/version"
    async with aiohttp.ClientSession() as s:
        try:
            async with s.get(plain) as r:
                assert r.status >= 400
        except aiohttp.ClientError:
            pass  # the TLS listener hangs up on plain HTTP: also fine


async def test_client_routes_are_not_on_the_federation_listener(
    federation_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{federation_url}/_matrix/client/versions") as r:
        assert r.status == 404
        assert (await r.json())["errcode"] == "M_UNRECOGNIZED"
