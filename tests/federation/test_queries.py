"""Federation queries between two real nodes (node/federation/queries.py): profile,
room alias, devices and keys, the published room directory; inbound with real signed
requests, and outbound for local clients (spec: server-server-api.md "Querying for
information", "Device Management", "End-to-End Encryption", "Published Room
Directory")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from node.federation.common import RemoteError
from tests.federation.edu_nodes import (
    Peer,
    create_room,
    cross_signing_keys,
    start_peer,
    upload_keys,
)

V1 = "/_matrix/federation/v1"


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[tuple[Peer, Peer]]:
    async with AsyncExitStack() as stack:
        a = await start_peer(stack, tmp_path, "a")
        b = await start_peer(stack, tmp_path, "b")
        yield a, b


async def ask(
    asker: Peer, answerer: Peer, method: str, path: str, body: Any = None, **query: str
) -> Any:
    return await asker.node.federation_client.request(
        method, answerer.server_name, V1 + path, query=query or None, body=body
    )


async def refused(
    asker: Peer, answerer: Peer, method: str, path: str, body: Any = None, **query: str
) -> RemoteError:
    with pytest.raises(RemoteError) as caught:
        await ask(asker, answerer, method, path, body, **query)
    return caught.value


async def test_profile_query(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    await b.call("PUT", f"/profile/{b.user_id}/displayname", {"displayname": "Bea"})
    assert await ask(a, b, "GET", "/query/profile", user_id=b.user_id) == {"displayname": "Bea"}
    only = await ask(a, b, "GET", "/query/profile", user_id=b.user_id, field="displayname")
    assert only == {"displayname": "Bea"}
    for query, status, errcode in [
        ({"user_id": b.user_id, "field": "avatar_url"}, 404, "M_NOT_FOUND"),
        ({"user_id": f"@nobody:{b.server_name}"}, 404, "M_NOT_FOUND"),
        ({"user_id": a.user_id}, 400, "M_INVALID_PARAM"),
        ({"user_id": "not-a-user"}, 400, "M_INVALID_PARAM"),
        ({}, 400, "M_MISSING_PARAM"),
    ]:
        error = await refused(a, b, "GET", "/query/profile", **query)
        assert (error.status, error.errcode) == (status, errcode), query
    # A local client asks for the remote profile: A asks B.
    path = "/profile/" + quote(b.user_id, safe="@:")
    assert await a.call("GET", path) == {"displayname": "Bea"}
    assert await a.call("GET", path + "/displayname") == {"displayname": "Bea"}
    missing = await a.call("GET", "/profile/" + quote(f"@nobody:{b.server_name}"), status=404)
    assert missing["errcode"] == "M_NOT_FOUND"


async def test_directory_query(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    alias = f"#club:{b.server_name}"
    room_id = await create_room(b, room_alias_name="club")
    answer = await ask(a, b, "GET", "/query/directory", room_alias=alias)
    assert answer["room_id"] == room_id and b.server_name in answer["servers"]
    for query, status, errcode in [
        ({"room_alias": f"#none:{b.server_name}"}, 404, "M_NOT_FOUND"),
        ({"room_alias": f"#club:{a.server_name}"}, 404, "M_NOT_FOUND"),
        ({"room_alias": "club"}, 400, "M_INVALID_PARAM"),
        ({}, 400, "M_MISSING_PARAM"),
    ]:
        error = await refused(a, b, "GET", "/query/directory", **query)
        assert (error.status, error.errcode) == (status, errcode), query
    # A's client resolves B's alias through A, and the service gives joins the servers.
    found = await a.call("GET", "/directory/room/" + quote(alias, safe=""))
    assert found["room_id"] == room_id and b.server_name in found["servers"]
    assert await a.node.directory.resolve_remote_alias(alias) == (room_id, [b.server_name])
    assert await a.node.directory.resolve_alias(alias) == room_id
    error = await a.call("GET", "/directory/room/" + quote(f"#none:{b.server_name}"), status=404)
    assert error["errcode"] == "M_NOT_FOUND"


async def test_public_rooms(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    listed = await create_room(b, name="Garden club", visibility="public")
    await create_room(b, name="Hidden")
    page = await ask(a, b, "GET", "/publicRooms")
    assert [c["room_id"] for c in page["chunk"]] == [listed]
    assert page["chunk"][0]["name"] == "Garden club"
    assert (await ask(a, b, "GET", "/publicRooms", limit="0"))["chunk"] == page["chunk"]
    found = await ask(a, b, "POST", "/publicRooms", {"filter": {"generic_search_term": "garden"}})
    assert [c["room_id"] for c in found["chunk"]] == [listed]
    none = await ask(a, b, "POST", "/publicRooms", {"filter": {"generic_search_term": "zzz"}})
    assert none["chunk"] == []
    for method, body, query in [
        ("GET", None, {"limit": "x"}),
        ("GET", None, {"limit": "-1"}),
        ("POST", {"limit": "ten"}, {}),
        ("POST", {"filter": []}, {}),
        ("POST", {"filter": {"room_types": [1]}}, {}),
        ("POST", {"since": "garbage"}, {}),
    ]:
        error = await refused(a, b, method, "/publicRooms", body, **query)
        assert error.status == 400 and error.errcode in ("M_INVALID_PARAM", "M_BAD_JSON")
    # A's client lists B's directory through A.
    remote = await a.call("GET", "/publicRooms", server=b.server_name)
    assert [c["room_id"] for c in remote["chunk"]] == [listed]
    remote = await a.call(
        "POST", "/publicRooms", {"filter": {"generic_search_term": "zzz"}}, server=b.server_name
    )
    assert remote["chunk"] == []


async def test_devices_and_keys(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    uploaded = await upload_keys(b, "DEV1", otks=1)
    await b.call("PUT", "/devices/DEV1", {"display_name": "Bea's phone"})
    cross = cross_signing_keys(b.user_id)
    await b.call("POST", "/keys/device_signing/upload", cross)

    devices = await ask(a, b, "GET", "/user/devices/" + quote(b.user_id, safe=""))
    assert devices["user_id"] == b.user_id and isinstance(devices["stream_id"], int)
    assert devices["devices"] == [{"device_id": "DEV1", "keys": uploaded["device_keys"]}]
    assert devices["master_key"] == cross["master_key"]
    assert devices["self_signing_key"] == cross["self_signing_key"]

    wanted = {b.user_id: [], a.user_id: [], f"@nobody:{b.server_name}": []}
    keys = await ask(a, b, "POST", "/user/keys/query", {"device_keys": wanted})
    assert keys["device_keys"] == {b.user_id: {"DEV1": {**uploaded["device_keys"], "unsigned": {}}}}
    assert keys["master_keys"] == {b.user_id: cross["master_key"]}
    assert keys["self_signing_keys"] == {b.user_id: cross["self_signing_key"]}
    assert "user_signing_keys" not in keys  # only ever for the key's owner

    claim = {"one_time_keys": {b.user_id: {"DEV1": "signed_curve25519"}}}
    first = await ask(a, b, "POST", "/user/keys/claim", claim)
    otk = uploaded["one_time_keys"]["signed_curve25519:K0"]
    assert first["one_time_keys"] == {b.user_id: {"DEV1": {"signed_curve25519:K0": otk}}}
    fallback = uploaded["fallback_keys"]["signed_curve25519:F"]
    for _ in range(2):  # one-time keys used up: the fallback key, again and again
        again = await ask(a, b, "POST", "/user/keys/claim", claim)
        assert again["one_time_keys"] == {b.user_id: {"DEV1": {"signed_curve25519:F": fallback}}}

    for path, body in [
        ("/user/keys/query", {}),
        ("/user/keys/query", {"device_keys": []}),
        ("/user/keys/query", {"device_keys": {b.user_id: "DEV1"}}),
        ("/user/keys/claim", {"one_time_keys": {b.user_id: ["DEV1"]}}),
        ("/user/keys/claim", {"one_time_keys": {b.user_id: {"DEV1": 5}}}),
    ]:
        error = await refused(a, b, "POST", path, body)
        assert error.status == 400, (path, body)
    error = await refused(a, b, "GET", "/user/devices/" + quote(a.user_id, safe=""))
    assert (error.status, error.errcode) == (400, "M_INVALID_PARAM")
    nobody = await ask(a, b, "GET", "/user/devices/" + quote(f"@nobody:{b.server_name}"))
    assert nobody["devices"] == []


async def test_queries_need_a_signed_request(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    url = f"https://{b.server_name}{V1}/query/profile"
    async with a.http.get(url, params={"user_id": b.user_id}, ssl=False) as r:
        assert r.status == 401
        assert (await r.json())["errcode"] == "M_UNAUTHORIZED"
