"""Inbound X-Matrix authentication: node A's real client against node B's real federation
app (the real middleware, plus a test-only route), both on loopback over TLS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from node.app import RunningNode
from node.events.signing import generate_signing_key
from node.federation.auth import CONTENT
from node.federation.common import ORIGIN, RemoteError
from node.federation.keys import ServerKey
from node.federation.x_matrix import sign_request
from tests.federation.nodes import croft_node, croft_node_with_app
from tests.interop.util import free_port

TEST_PATH = "/_matrix/federation/v1/croft_test"

routes = web.RouteTableDef()


@routes.route("*", TEST_PATH + "/{name}")
async def echo(request: web.Request) -> web.Response:
    return web.json_response({"origin": request[ORIGIN], "content": request[CONTENT]})


def name_of(running: RunningNode) -> str:
    return running.node.config.server_name


async def send(
    http: aiohttp.ClientSession,
    b: RunningNode,
    method: str,
    uri: str,
    headers: list[str],
    body: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    hdrs = [("Authorization", h) for h in headers]
    async with http.request(method, f"https://{name_of(b)}{uri}", headers=hdrs, data=body) as resp:
        return resp.status, await resp.json()


async def test_signed_requests_pass_and_name_their_origin(tmp_path: Path) -> None:
    async with croft_node(tmp_path, "a") as a, croft_node_with_app(tmp_path, "b", routes) as b:
        client = a.node.federation_client
        answer = await client.get_json(name_of(b), TEST_PATH + "/x", query={"q": ["1", "a b"]})
        assert answer == {"origin": name_of(a), "content": None}
        body = {"hello": ["wörld", 1, {"nested": True}]}
        answer = await client.put_json(name_of(b), TEST_PATH + "/y%2Fz", body)
        assert answer == {"origin": name_of(a), "content": body}
        answer = await client.post_json(name_of(b), TEST_PATH + "/x", {})
        assert answer == {"origin": name_of(a), "content": {}}


async def test_requests_that_do_not_authenticate(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with croft_node(tmp_path, "a") as a, croft_node_with_app(tmp_path, "b", routes) as b:
        a_key, b_name = a.node.server_key, name_of(b)
        uri = TEST_PATH + "/x?q=1"
        body = {"k": "v"}
        raw = json.dumps(body).encode()
        good = sign_request(a_key, "PUT", uri, b_name, body)
        assert (await send(http, b, "PUT", uri, [good], raw))[0] == 200

        stranger = ServerKey(f"127.0.0.1:{free_port()}", generate_signing_key("s"))
        bad_sig = good.rsplit('sig="', 1)[0] + 'sig="' + "A" * 86 + '"'
        cases: dict[str, tuple[str, str, list[str], bytes | None]] = {
            "no header": ("PUT", uri, [], raw),
            "another scheme": ("PUT", uri, ["Bearer abc"], raw),
            "bad signature": ("PUT", uri, [bad_sig], raw),
            "other body": ("PUT", uri, [good], b'{"k": "w"}'),
            "no body": ("PUT", uri, [good], None),
            "other method": ("POST", uri, [good], raw),
            "other query": ("PUT", TEST_PATH + "/x?q=2", [good], raw),
            "other path": ("PUT", TEST_PATH + "/y?q=1", [good], raw),
            "other destination": (
                "PUT",
                uri,
                [sign_request(a_key, "PUT", uri, "other.example", body)],
                raw,
            ),
            "our own name": (
                "PUT",
                uri,
                [sign_request(b.node.server_key, "PUT", uri, b_name, body)],
                raw,
            ),
            "unreachable origin": (
                "PUT",
                uri,
                [sign_request(stranger, "PUT", uri, b_name, body)],
                raw,
            ),
            "malformed header": ("PUT", uri, ['X-Matrix origin="a.example",sig="x"'], raw),
            "unknown key": (
                "PUT",
                uri,
                [good.replace(a_key.key_id, "ed25519:nope")],
                raw,
            ),
        }
        for case, (method, target, headers, data) in cases.items():
            status, answer = await send(http, b, method, target, headers, data)
            assert (status, answer.get("errcode")) == (401, "M_UNAUTHORIZED"), case
            assert answer["error"], case

        # A good header among bad ones is enough.
        status, answer = await send(http, b, "PUT", uri, ["Bearer x", bad_sig, good], raw)
        assert (status, answer["origin"]) == (200, name_of(a))
        # Servers before spec v1.3 leave the destination parameter out.
        old_style = good.replace(f'destination="{b_name}",', "")
        assert "destination" not in old_style
        assert (await send(http, b, "PUT", uri, [old_style], raw))[0] == 200


async def test_malformed_bodies_and_unauthenticated_paths(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with croft_node(tmp_path, "a") as a, croft_node_with_app(tmp_path, "b", routes) as b:
        uri = TEST_PATH + "/x"
        header = sign_request(a.node.server_key, "PUT", uri, name_of(b), {})
        status, answer = await send(http, b, "PUT", uri, [header], b"{not json")
        assert (status, answer["errcode"]) == (400, "M_NOT_JSON")
        # Version and key endpoints need no signature; unknown endpoints answer 404.
        status, answer = await send(http, b, "GET", "/_matrix/federation/v1/version", [])
        assert status == 200 and answer["server"]["name"] == "Croft"
        status, answer = await send(http, b, "GET", "/_matrix/key/v2/server", [])
        assert status == 200 and answer["server_name"] == name_of(b)
        status, answer = await send(http, b, "GET", "/_matrix/federation/v1/nothing_here", [])
        assert (status, answer["errcode"]) == (404, "M_UNRECOGNIZED")


async def test_the_client_sees_the_401(tmp_path: Path) -> None:
    """A request B cannot verify (A's key is not what B fetched) fails with M_UNAUTHORIZED."""
    async with croft_node(tmp_path, "a") as a, croft_node_with_app(tmp_path, "b", routes) as b:
        client = a.node.federation_client
        real = client.server_key
        client.server_key = ServerKey(real.server_name, generate_signing_key(real.key_id[8:]))
        with pytest.raises(RemoteError) as err:
            await client.get_json(name_of(b), TEST_PATH + "/x")
        assert (err.value.status, err.value.errcode) == (401, "M_UNAUTHORIZED")
