"""Server-side key backups (/room_keys/*) on a real node, and the replacement rules."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from node.e2ee.backup import should_replace
from node.e2ee.backup_store import RoomKey
from tests.e2ee.conftest import Device, call

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!room:127.0.0.1:8448"


def key(
    first: int = 0, forwarded: int = 0, verified: bool = False, data: str = "x"
) -> dict[str, Any]:
    return {
        "first_message_index": first,
        "forwarded_count": forwarded,
        "is_verified": verified,
        "session_data": {"ephemeral": "e", "ciphertext": data, "mac": "m"},
    }


def rk(first: int, forwarded: int, verified: bool) -> RoomKey:
    return RoomKey(first, forwarded, verified, {})


# The spec's rules: verified wins; then the lower first_message_index; then the lower
# forwarded_count; a key that is no better does not replace the stored one.
@pytest.mark.parametrize(
    ("current", "new", "replace"),
    [
        (None, rk(5, 5, False), True),
        (rk(0, 0, False), rk(9, 9, True), True),
        (rk(9, 9, True), rk(0, 0, False), False),
        (rk(5, 0, True), rk(4, 9, True), True),
        (rk(4, 0, True), rk(5, 0, True), False),
        (rk(4, 3, False), rk(4, 2, False), True),
        (rk(4, 2, False), rk(4, 3, False), False),
        (rk(4, 2, False), rk(4, 2, False), False),
    ],
)
def test_should_replace(current: RoomKey | None, new: RoomKey, replace: bool) -> None:
    assert should_replace(current, new) is replace


async def new_version(http: aiohttp.ClientSession, v3: str, dev: Device) -> str:
    got = await call(
        http,
        "POST",
        f"{v3}/room_keys/version",
        dev.token,
        {"algorithm": ALGORITHM, "auth_data": {"public_key": "abc"}},
    )
    return str(got["version"])


async def test_versions_lifecycle(http: aiohttp.ClientSession, v3: str, dev1: Device) -> None:
    missing = await call(http, "GET", f"{v3}/room_keys/version", dev1.token, status=404)
    assert missing["errcode"] == "M_NOT_FOUND"
    v1 = await new_version(http, v3, dev1)
    v2 = await new_version(http, v3, dev1)
    assert v1 != v2
    current = await call(http, "GET", f"{v3}/room_keys/version", dev1.token)
    assert current == {
        "version": v2,
        "algorithm": ALGORITHM,
        "auth_data": {"public_key": "abc"},
        "etag": "0",
        "count": 0,
    }
    old = await call(http, "GET", f"{v3}/room_keys/version/{v1}", dev1.token)
    assert old["version"] == v1
    await call(
        http,
        "PUT",
        f"{v3}/room_keys/version/{v2}",
        dev1.token,
        {"algorithm": ALGORITHM, "auth_data": {"public_key": "new"}, "version": v2},
    )
    got = await call(http, "GET", f"{v3}/room_keys/version/{v2}", dev1.token)
    assert got["auth_data"] == {"public_key": "new"}
    # Deleting the current version makes the previous one current; deleting twice is fine.
    await call(http, "DELETE", f"{v3}/room_keys/version/{v2}", dev1.token)
    await call(http, "DELETE", f"{v3}/room_keys/version/{v2}", dev1.token)
    assert (await call(http, "GET", f"{v3}/room_keys/version", dev1.token))["version"] == v1
    gone = await call(http, "GET", f"{v3}/room_keys/version/{v2}", dev1.token, status=404)
    assert gone["errcode"] == "M_NOT_FOUND"
    # Version numbers are never reused.
    assert await new_version(http, v3, dev1) not in (v1, v2)


async def test_keys_replacement_etag_and_count(
    http: aiohttp.ClientSession, v3: str, dev1: Device
) -> None:
    version = await new_version(http, v3, dev1)
    url = f"{v3}/room_keys/keys/{ROOM}/sess1"
    first = await call(http, "PUT", url, dev1.token, key(first=5), version=version)
    assert first["count"] == 1
    # A worse key does not replace it, and the etag stays.
    same = await call(http, "PUT", url, dev1.token, key(first=9, data="worse"), version=version)
    assert same == first
    better = await call(
        http, "PUT", url, dev1.token, key(first=5, verified=True, data="better"), version=version
    )
    assert better["count"] == 1 and better["etag"] != first["etag"]
    got = await call(http, "GET", url, dev1.token, version=version)
    assert got == key(first=5, verified=True, data="better")

    await call(
        http,
        "PUT",
        f"{v3}/room_keys/keys/{ROOM}",
        dev1.token,
        {"sessions": {"sess2": key()}},
        version=version,
    )
    all_keys = await call(
        http,
        "PUT",
        f"{v3}/room_keys/keys",
        dev1.token,
        {"rooms": {"!other:127.0.0.1:8448": {"sessions": {"s": key()}}}},
        version=version,
    )
    assert all_keys["count"] == 3
    info = await call(http, "GET", f"{v3}/room_keys/version", dev1.token)
    assert info["count"] == 3 and info["etag"] == all_keys["etag"]

    room = await call(http, "GET", f"{v3}/room_keys/keys/{ROOM}", dev1.token, version=version)
    assert set(room["sessions"]) == {"sess1", "sess2"}
    everything = await call(http, "GET", f"{v3}/room_keys/keys", dev1.token, version=version)
    assert set(everything["rooms"]) == {ROOM, "!other:127.0.0.1:8448"}
    empty = await call(
        http, "GET", f"{v3}/room_keys/keys/!none:127.0.0.1:8448", dev1.token, version=version
    )
    assert empty == {"sessions": {}}
    nokey = await call(
        http, "GET", f"{v3}/room_keys/keys/{ROOM}/nope", dev1.token, version=version, status=404
    )
    assert nokey["errcode"] == "M_NOT_FOUND"

    deleted = await call(http, "DELETE", url, dev1.token, version=version)
    assert deleted["count"] == 2
    deleted = await call(http, "DELETE", f"{v3}/room_keys/keys/{ROOM}", dev1.token, version=version)
    assert deleted["count"] == 1
    deleted = await call(http, "DELETE", f"{v3}/room_keys/keys", dev1.token, version=version)
    assert deleted["count"] == 0
    assert await call(http, "GET", f"{v3}/room_keys/keys", dev1.token, version=version) == {
        "rooms": {}
    }


async def test_wrong_and_unknown_versions(
    http: aiohttp.ClientSession, v3: str, dev1: Device
) -> None:
    url = f"{v3}/room_keys/keys/{ROOM}/s"
    none = await call(http, "PUT", url, dev1.token, key(), version="1", status=404)
    assert none["errcode"] == "M_NOT_FOUND"
    v1 = await new_version(http, v3, dev1)
    v2 = await new_version(http, v3, dev1)
    wrong = await call(http, "PUT", url, dev1.token, key(), version=v1, status=403)
    assert wrong["errcode"] == "M_WRONG_ROOM_KEYS_VERSION"
    assert wrong["current_version"] == v2
    wrong = await call(http, "PUT", url, dev1.token, key(), version="abc", status=403)
    assert wrong["errcode"] == "M_WRONG_ROOM_KEYS_VERSION"
    for method in ("GET", "DELETE"):
        got = await call(http, method, url, dev1.token, version="99", status=404)
        assert got["errcode"] == "M_NOT_FOUND"
    for path in ("/room_keys/version/99", "/room_keys/version/x"):
        got = await call(http, "GET", v3 + path, dev1.token, status=404)
        assert got["errcode"] == "M_NOT_FOUND"
        got = await call(http, "DELETE", v3 + path, dev1.token, status=404)
        assert got["errcode"] == "M_NOT_FOUND"


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "status", "errcode"),
    [
        ("POST", "/room_keys/version", {"algorithm": ALGORITHM}, {}, 400, "M_MISSING_PARAM"),
        ("POST", "/room_keys/version", {"algorithm": 1, "auth_data": {}}, {}, 400, "M_BAD_JSON"),
        (
            "POST",
            "/room_keys/version",
            {"algorithm": ALGORITHM, "auth_data": []},
            {},
            400,
            "M_BAD_JSON",
        ),
        (
            "PUT",
            "/room_keys/version/{v}",
            {"algorithm": "other", "auth_data": {}},
            {},
            400,
            "M_INVALID_PARAM",
        ),
        (
            "PUT",
            "/room_keys/version/{v}",
            {"algorithm": ALGORITHM, "auth_data": {}, "version": "7"},
            {},
            400,
            "M_INVALID_PARAM",
        ),
        (
            "PUT",
            "/room_keys/version/99",
            {"algorithm": ALGORITHM, "auth_data": {}},
            {},
            404,
            "M_NOT_FOUND",
        ),
        ("PUT", "/room_keys/keys/{room}/s", key(), {}, 400, "M_MISSING_PARAM"),
        (
            "PUT",
            "/room_keys/keys/{room}/s",
            {**key(), "first_message_index": -1},
            {"v": 1},
            400,
            "M_BAD_JSON",
        ),
        (
            "PUT",
            "/room_keys/keys/{room}/s",
            {**key(), "is_verified": "yes"},
            {"v": 1},
            400,
            "M_BAD_JSON",
        ),
        (
            "PUT",
            "/room_keys/keys/{room}/s",
            {**key(), "session_data": "x"},
            {"v": 1},
            400,
            "M_BAD_JSON",
        ),
        ("PUT", "/room_keys/keys/{room}", {"sessions": []}, {"v": 1}, 400, "M_BAD_JSON"),
        ("PUT", "/room_keys/keys", {}, {"v": 1}, 400, "M_MISSING_PARAM"),
        (
            "PUT",
            "/room_keys/keys",
            {"rooms": {"nope": {"sessions": {}}}},
            {"v": 1},
            400,
            "M_INVALID_PARAM",
        ),
        ("GET", "/room_keys/keys/not-a-room", None, {"v": 1}, 400, "M_INVALID_PARAM"),
        ("GET", "/room_keys/keys", None, {}, 400, "M_MISSING_PARAM"),
    ],
)
async def test_bad_backup_requests(
    http: aiohttp.ClientSession,
    v3: str,
    dev1: Device,
    method: str,
    path: str,
    body: Any,
    params: dict[str, Any],
    status: int,
    errcode: str,
) -> None:
    version = await new_version(http, v3, dev1)
    query = {"version": version} if params else {}
    url = v3 + path.replace("{v}", version).replace("{room}", ROOM)
    got = await call(http, method, url, dev1.token, body, status=status, **query)
    assert got["errcode"] == errcode
