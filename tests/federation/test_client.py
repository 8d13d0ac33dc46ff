"""The outbound federation client against a real TLS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from node.config import FederationConfig
from node.events.canonical import parse_json
from node.events.signing import generate_signing_key, get_verify_key, verify_json
from node.federation.client import FederationClient, encode_query, needs_certificate_check
from node.federation.common import Destination, InvalidResponse, RemoteError, Unreachable
from node.federation.keys import ServerKey
from node.federation.tls import create_self_signed_certificate
from node.federation.x_matrix import parse_x_matrix, signed_request_object
from tests.interop.util import free_port

KEY = ServerKey("origin.test", generate_signing_key("c1"))
CERT_NAME = "peer.test"


class FixedResolver:
    """Every name goes to 127.0.0.1:port, with the given SNI and Host header."""

    def __init__(self, port: int, sni: str | None = None, host: str | None = None) -> None:
        self.port, self.sni, self.host = port, sni, host

    async def resolve(self, server_name: str) -> Destination:
        return Destination(server_name, "127.0.0.1", self.port, self.sni, self.host or server_name)


@dataclasses.dataclass
class Peer:
    port: int
    cert: Path
    seen: list[dict[str, Any]]
    sni: list[str | None]
    release: asyncio.Event
    arrived: asyncio.Event


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Peer]:
    cert, key = tmp_path / "peer.crt", tmp_path / "peer.key"
    create_self_signed_certificate(CERT_NAME, cert, key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    port = free_port()
    state = Peer(port, cert, [], [], asyncio.Event(), asyncio.Event())
    ctx.sni_callback = lambda _sock, name, _ctx: state.sni.append(name)  # type: ignore[assignment,return-value]

    async def record(request: web.Request) -> web.Response:
        body = await request.read()
        state.seen.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        what = request.match_info.get("what", "ok")
        state.arrived.set()
        if what == "hang":
            await state.release.wait()
        if what == "error":
            return web.json_response({"errcode": "M_FORBIDDEN", "error": "no"}, status=403)
        if what == "crash":
            return web.Response(status=500, text="<html>oops</html>")
        if what == "notjson":
            return web.Response(text="hello")
        if what == "big":
            return web.json_response({"x": "y" * 5000})
        return web.json_response({"ok": True, "echo": parse_json(body) if body else None})

    app = web.Application()
    app.router.add_route("*", "/_matrix/test/{what}", record)
    app.router.add_put("/_matrix/federation/v1/send/{txn}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


def make_client(resolver: Any, **config: Any) -> FederationClient:
    return FederationClient(KEY, resolver, FederationConfig(**config))


def test_pure_helpers() -> None:
    assert encode_query({"a": "x y", "b": ["1", "2/3"], "ü": "é"}) == (
        "a=x%20y&b=1&b=2%2F3&%C3%BC=%C3%A9"
    )
    assert encode_query(None) == ""
    assert not needs_certificate_check("127.0.0.1:8448")
    assert not needs_certificate_check("[::1]")
    assert not needs_certificate_check("pi.local")
    assert not needs_certificate_check("pi.local:8448")
    assert needs_certificate_check("example.org")
    assert needs_certificate_check("localhost:8448")


async def test_signed_get_carries_a_verifiable_x_matrix_header(peer: Peer) -> None:
    client = make_client(FixedResolver(peer.port, host="peer.example:8448"))
    assert client._session is None  # nothing made before the first request
    try:
        answer = await client.get_json(
            "127.0.0.1:1", "/_matrix/test/ok", query={"v": ["1", "a b"], "w": "/"}
        )
    finally:
        await client.close()
    assert answer == {"ok": True, "echo": None}
    (req,) = peer.seen
    assert req["raw_path"] == "/_matrix/test/ok?v=1&v=a%20b&w=%2F"
    assert req["headers"]["Host"] == "peer.example:8448"
    auth = parse_x_matrix(req["headers"]["Authorization"])
    assert (auth.origin, auth.destination, auth.key_id) == (
        "origin.test",
        "127.0.0.1:1",
        "ed25519:c1",
    )
    obj = signed_request_object("GET", req["raw_path"], "origin.test", "127.0.0.1:1", None)
    obj["signatures"] = {"origin.test": {auth.key_id: auth.signature}}
    verify_json(obj, "origin.test", get_verify_key(KEY.signing_key))
    assert peer.sni == [None]  # no SNI for an IP address


async def test_put_body_and_send_transaction(peer: Peer) -> None:
    client = make_client(FixedResolver(peer.port))
    body = {"origin": "origin.test", "origin_server_ts": 1, "pdus": [], "edus": []}
    try:
        answer = await client.send_transaction("127.0.0.1:1", "t/1 x", body)
        unsigned = await client.post_json("127.0.0.1:1", "/_matrix/test/ok", {}, signed=False)
    finally:
        await client.close()
    assert answer == {"ok": True, "echo": body}
    first, second = peer.seen
    assert first["method"] == "PUT"
    assert first["raw_path"] == "/_matrix/federation/v1/send/t%2F1%20x"
    auth = parse_x_matrix(first["headers"]["Authorization"])
    obj = signed_request_object("PUT", first["raw_path"], "origin.test", "127.0.0.1:1", body)
    obj["signatures"] = {"origin.test": {auth.key_id: auth.signature}}
    verify_json(obj, "origin.test", get_verify_key(KEY.signing_key))
    assert first["headers"]["Content-Type"] == "application/json"
    assert unsigned == {"ok": True, "echo": {}}
    assert "Authorization" not in second["headers"]


async def test_errors(peer: Peer) -> None:
    client = make_client(FixedResolver(peer.port))
    dest = "127.0.0.1:1"
    try:
        with pytest.raises(RemoteError) as err:
            await client.get_json(dest, "/_matrix/test/error")
        assert (err.value.status, err.value.errcode) == (403, "M_FORBIDDEN")
        with pytest.raises(RemoteError) as err:
            await client.get_json(dest, "/_matrix/test/crash")
        assert (err.value.status, err.value.body) == (500, {})
        with pytest.raises(InvalidResponse, match="invalid JSON"):
            await client.get_json(dest, "/_matrix/test/notjson")
        with pytest.raises(InvalidResponse, match=r"too large|larger"):
            await client.get_json(dest, "/_matrix/test/big", max_bytes=1000)
        with pytest.raises(Unreachable, match="timed out"):
            await client.get_json(dest, "/_matrix/test/hang", timeout=0.2)
    finally:
        await client.close()
    closed = make_client(FixedResolver(free_port()))
    try:
        with pytest.raises(Unreachable):
            await closed.get_json(dest, "/_matrix/test/ok")
    finally:
        await closed.close()
    with pytest.raises(Unreachable, match="closed"):
        await closed.get_json(dest, "/_matrix/test/ok")


async def test_certificates_of_dns_names_are_verified(peer: Peer, tmp_path: Path) -> None:
    resolver = FixedResolver(peer.port, sni=CERT_NAME, host=CERT_NAME)
    # A DNS server name: the self-signed certificate is refused...
    strict = make_client(resolver)
    try:
        with pytest.raises(Unreachable, match="certificate"):
            await strict.get_json(CERT_NAME, "/_matrix/test/ok")
    finally:
        await strict.close()
    assert peer.seen == []  # nothing was sent to an unauthenticated server
    # ... accepted when its certificate is a configured CA ...
    trusting = FederationClient(
        KEY, resolver, FederationConfig(ca_file=peer.cert.name), data_dir=peer.cert.parent
    )
    try:
        assert (await trusting.get_json(CERT_NAME, "/_matrix/test/ok"))["ok"] is True
    finally:
        await trusting.close()
    # ... still checked against the name (SNI) ...
    wrong = FederationClient(
        KEY,
        FixedResolver(peer.port, sni="other.test"),
        FederationConfig(ca_file=str(peer.cert)),
    )
    try:
        with pytest.raises(Unreachable, match=r"certificate|match"):
            await wrong.get_json("other.test", "/_matrix/test/ok")
    finally:
        await wrong.close()
    # ... and not checked when verification is off.
    lax = make_client(resolver, verify_certificates=False)
    try:
        assert (await lax.get_json(CERT_NAME, "/_matrix/test/ok"))["ok"] is True
    finally:
        await lax.close()
    assert peer.sni.count(CERT_NAME) >= 2 and "other.test" in peer.sni


async def test_concurrency_cap(peer: Peer) -> None:
    client = make_client(FixedResolver(peer.port), max_concurrency=1)
    try:
        first = asyncio.create_task(client.get_json("127.0.0.1:1", "/_matrix/test/hang"))
        second = asyncio.create_task(client.get_json("127.0.0.1:1", "/_matrix/test/ok"))
        await peer.arrived.wait()
        for _ in range(50):  # give the second request every chance to go out
            await asyncio.sleep(0)
        assert [r["raw_path"] for r in peer.seen] == ["/_matrix/test/hang"]
        peer.release.set()
        await asyncio.gather(first, second)
        assert [r["raw_path"] for r in peer.seen] == ["/_matrix/test/hang", "/_matrix/test/ok"]
    finally:
        await client.close()
