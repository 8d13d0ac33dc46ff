"""The pure checks of uploaded keys (node/e2ee/validate.py), and junk input to every
E2EE endpoint: always a Matrix error, never a 500."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from node.e2ee.validate import (
    check_cross_signing_key,
    check_device_keys,
    check_fallback_keys,
    check_key_map,
)
from node.errors import MatrixError
from tests.e2ee.conftest import OWNER_ID, Device, call, ed25519_key, public, sign


def test_device_keys_are_returned_without_unsigned() -> None:
    dev = Device("DEV1", "", ed25519_key("DEV1"))
    keys = dev.device_keys()
    checked = check_device_keys({**keys, "unsigned": {"x": 1}}, OWNER_ID, "DEV1")
    assert checked == keys


def test_signature_must_be_by_the_device_key_itself() -> None:
    dev = Device("DEV1", "", ed25519_key("DEV1"))
    impostor = ed25519_key("DEV1")
    keys = sign({k: v for k, v in dev.device_keys().items() if k != "signatures"}, impostor)
    with pytest.raises(MatrixError) as e:
        check_device_keys(keys, OWNER_ID, "DEV1")
    assert e.value.errcode == "M_INVALID_PARAM"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, {}),
        ({"curve25519:A": "k"}, {("curve25519", "A"): "k"}),
        (
            {"signed_curve25519:A:B": {"key": "k", "signatures": {}}},
            {("signed_curve25519", "A:B"): {"key": "k", "signatures": {}}},
        ),
    ],
)
def test_key_maps(value: Any, expected: Any) -> None:
    assert check_key_map(value, "one_time_keys") == expected


@pytest.mark.parametrize(
    ("value", "errcode"),
    [
        ({":A": "k"}, "M_INVALID_PARAM"),
        ({"curve25519:": "k"}, "M_INVALID_PARAM"),
        ({"signed_curve25519:A": {"key": "k"}}, "M_BAD_JSON"),
        ({"signed_curve25519:A": {"key": "k", "signatures": []}}, "M_BAD_JSON"),
        ({"curve25519:A": None}, "M_BAD_JSON"),
        ({"curve25519:A": 2**60}, "M_BAD_JSON"),
    ],
)
def test_bad_key_maps(value: Any, errcode: str) -> None:
    with pytest.raises(MatrixError) as e:
        check_key_map(value, "one_time_keys")
    assert e.value.errcode == errcode


def test_one_fallback_key_per_algorithm() -> None:
    assert check_fallback_keys({"a:1": "x", "b:1": "y"}) == {("a", "1"): "x", ("b", "1"): "y"}
    with pytest.raises(MatrixError):
        check_fallback_keys({"a:1": "x", "a:2": "y"})


def test_cross_signing_key_shape() -> None:
    key = ed25519_key()
    obj = {
        "user_id": OWNER_ID,
        "usage": ["master"],
        "keys": {f"ed25519:{public(key)}": public(key)},
    }
    checked = check_cross_signing_key(obj, "master", OWNER_ID)
    assert checked.public_key == public(key) and checked.key_id == f"ed25519:{public(key)}"
    for bad in (
        {**obj, "keys": {f"ed25519:{public(key)}": "other"}},
        {**obj, "keys": {f"curve25519:{public(key)}": public(key)}},
        {**obj, "keys": {"ed25519:short": "short"}},
    ):
        with pytest.raises(MatrixError) as e:
            check_cross_signing_key(bad, "master", OWNER_ID)
        assert e.value.errcode == "M_INVALID_PARAM"


ENDPOINTS = [
    ("POST", "/keys/upload"),
    ("POST", "/keys/query"),
    ("POST", "/keys/claim"),
    ("POST", "/keys/device_signing/upload"),
    ("POST", "/keys/signatures/upload"),
    ("PUT", "/sendToDevice/m.test/junk"),
    ("POST", "/room_keys/version"),
    ("PUT", "/room_keys/version/1"),
    ("PUT", "/room_keys/keys?version=1"),
    ("PUT", "/room_keys/keys/!r:x?version=1"),
    ("PUT", "/room_keys/keys/!r:x/s?version=1"),
]
JUNK: list[Any] = [
    [],
    "text",
    None,
    {"device_keys": {OWNER_ID: {"DEV1": []}}, "one_time_keys": {OWNER_ID: {"D": {}}}},
    {"master_key": {"keys": None}, "messages": {OWNER_ID: {"*": []}}, "rooms": {"!r:x": 1}},
    {OWNER_ID: {"DEV1": {"signatures": "x"}, "K": {"signatures": {OWNER_ID: 1}}}},
    {"auth": "x", "master_key": {"user_id": OWNER_ID, "usage": ["master"], "keys": {}}},
    {"algorithm": ["x"], "auth_data": "y", "sessions": {"s": {"first_message_index": 1e400}}},
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_junk_is_a_client_error(
    http: aiohttp.ClientSession, v3: str, dev1: Device, method: str, path: str
) -> None:
    for body in JUNK:
        async with http.request(
            method, v3 + path, json=body, headers={"Authorization": f"Bearer {dev1.token}"}
        ) as r:
            data = await r.json()
            assert r.status < 500, (body, data)
            if r.status >= 400 and r.status != 401:
                assert data["errcode"].startswith("M_"), data
    # Not JSON at all.
    async with http.request(
        method, v3 + path, data=b"{nope", headers={"Authorization": f"Bearer {dev1.token}"}
    ) as r:
        assert r.status == 400 and (await r.json())["errcode"] == "M_NOT_JSON"
    await call(http, "GET", f"{v3}/keys/changes", dev1.token, status=400)
