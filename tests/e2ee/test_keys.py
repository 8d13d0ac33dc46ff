"""POST /keys/upload, /keys/query, /keys/claim and GET /keys/changes on a real node."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from node.app import RunningNode
from tests.e2ee.conftest import OWNER_ID, Device, call, ed25519_key, sign


async def upload(
    http: aiohttp.ClientSession, v3: str, dev: Device, body: dict[str, Any], status: int = 200
) -> Any:
    return await call(http, "POST", f"{v3}/keys/upload", dev.token, body, status=status)


async def test_upload_query_and_counts(
    http: aiohttp.ClientSession, v3: str, dev1: Device, dev2: Device
) -> None:
    keys = dev1.device_keys()
    otks = {f"signed_curve25519:AAA{i}": dev1.one_time_key() for i in range(3)}
    got = await upload(http, v3, dev1, {"device_keys": keys, "one_time_keys": otks})
    assert got == {"one_time_key_counts": {"signed_curve25519": 3}}
    # Re-uploading the same keys changes nothing.
    got = await upload(http, v3, dev1, {"device_keys": keys, "one_time_keys": otks})
    assert got["one_time_key_counts"] == {"signed_curve25519": 3}
    # A device without keys reports a zero count.
    got = await upload(http, v3, dev2, {})
    assert got == {"one_time_key_counts": {"signed_curve25519": 0}}

    result = await call(
        http, "POST", f"{v3}/keys/query", dev2.token, {"device_keys": {OWNER_ID: []}}
    )
    assert list(result["device_keys"][OWNER_ID]) == ["DEV1"]  # DEV2 has no keys
    dev1_keys = result["device_keys"][OWNER_ID]["DEV1"]
    assert dev1_keys["unsigned"] == {}
    assert {k: v for k, v in dev1_keys.items() if k != "unsigned"} == keys
    assert result["failures"] == {}
    # Asking for named devices only.
    result = await call(
        http, "POST", f"{v3}/keys/query", dev2.token, {"device_keys": {OWNER_ID: ["DEV2"]}}
    )
    assert result["device_keys"] == {OWNER_ID: {}}


async def test_query_reports_remote_and_skips_unknown_users(
    http: aiohttp.ClientSession, v3: str, dev1: Device
) -> None:
    result = await call(
        http,
        "POST",
        f"{v3}/keys/query",
        dev1.token,
        {"device_keys": {"@bob:elsewhere.example": [], "@nobody:127.0.0.1:8448": []}},
    )
    assert result["device_keys"] == {}
    failure = result["failures"]["elsewhere.example"]
    # Its server is asked; tests reach no other server.
    assert failure["status"] == 503 and "elsewhere.example" in failure["message"]


async def test_claim_one_time_then_fallback(
    http: aiohttp.ClientSession, v3: str, dev1: Device, dev2: Device
) -> None:
    otk_a, otk_b, fb = dev1.one_time_key(), dev1.one_time_key(), dev1.one_time_key(fallback=True)
    await upload(
        http,
        v3,
        dev1,
        {
            "device_keys": dev1.device_keys(),
            "one_time_keys": {"signed_curve25519:A": otk_a},
            "fallback_keys": {"signed_curve25519:F": fb},
        },
    )
    # Keys come out in upload order: a later upload is claimed later.
    await upload(http, v3, dev1, {"one_time_keys": {"signed_curve25519:B": otk_b}})
    want = {"one_time_keys": {OWNER_ID: {"DEV1": "signed_curve25519"}}}
    claims = []
    for _ in range(4):
        got = await call(http, "POST", f"{v3}/keys/claim", dev2.token, want)
        assert got["failures"] == {}
        claims.append(got["one_time_keys"][OWNER_ID]["DEV1"])
    assert claims == [
        {"signed_curve25519:A": otk_a},
        {"signed_curve25519:B": otk_b},
        {"signed_curve25519:F": fb},
        {"signed_curve25519:F": fb},  # the fallback key is reused until replaced
    ]
    # A device or algorithm with nothing to claim is left out.
    got = await call(
        http,
        "POST",
        f"{v3}/keys/claim",
        dev2.token,
        {
            "one_time_keys": {
                OWNER_ID: {"DEV1": "curve25519", "NOPE": "signed_curve25519"},
                "@bob:elsewhere.example": {"X": "signed_curve25519"},
            },
        },
    )
    assert got["one_time_keys"] == {}
    assert "elsewhere.example" in got["failures"]


async def test_keys_changes_between_sync_tokens(
    http: aiohttp.ClientSession, v3: str, dev1: Device, node: RunningNode
) -> None:
    before = str(node.node.notifier.current_token())
    await upload(http, v3, dev1, {"device_keys": dev1.device_keys()})
    after = str(node.node.notifier.current_token())
    got = await call(http, "GET", f"{v3}/keys/changes", dev1.token, **{"from": before, "to": after})
    assert got == {"changed": [OWNER_ID], "left": []}
    got = await call(http, "GET", f"{v3}/keys/changes", dev1.token, **{"from": after, "to": after})
    assert got == {"changed": [], "left": []}
    bad = await call(
        http, "GET", f"{v3}/keys/changes", dev1.token, status=400, **{"from": "x", "to": after}
    )
    assert bad["errcode"] == "M_INVALID_PARAM"
    bad = await call(http, "GET", f"{v3}/keys/changes", dev1.token, status=400, to=after)
    assert bad["errcode"] == "M_MISSING_PARAM"


async def test_changed_identity_keys_are_refused(
    http: aiohttp.ClientSession, v3: str, dev1: Device
) -> None:
    await upload(http, v3, dev1, {"device_keys": dev1.device_keys()})
    other = Device("DEV1", dev1.token, ed25519_key("DEV1"))
    got = await upload(http, v3, dev1, {"device_keys": other.device_keys()}, status=400)
    assert got["errcode"] == "M_INVALID_PARAM"


async def test_logout_deletes_the_device_keys(
    http: aiohttp.ClientSession, v3: str, dev1: Device, dev2: Device, node: RunningNode
) -> None:
    await upload(
        http,
        v3,
        dev1,
        {
            "device_keys": dev1.device_keys(),
            "one_time_keys": {"signed_curve25519:A": dev1.one_time_key()},
            "fallback_keys": {"signed_curve25519:F": dev1.one_time_key(fallback=True)},
        },
    )
    before = str(node.node.notifier.current_token())
    await call(http, "POST", f"{v3}/logout", dev1.token, {})
    result = await call(
        http, "POST", f"{v3}/keys/query", dev2.token, {"device_keys": {OWNER_ID: []}}
    )
    assert result["device_keys"] == {OWNER_ID: {}}
    got = await call(
        http,
        "POST",
        f"{v3}/keys/claim",
        dev2.token,
        {"one_time_keys": {OWNER_ID: {"DEV1": "signed_curve25519"}}},
    )
    assert got["one_time_keys"] == {}
    after = str(node.node.notifier.current_token())
    got = await call(http, "GET", f"{v3}/keys/changes", dev2.token, **{"from": before, "to": after})
    assert got["changed"] == [OWNER_ID]


def _unsigned(dev: Device) -> dict[str, Any]:
    keys = dev.device_keys()
    del keys["signatures"]
    return keys


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"device_keys": "nope"}, "M_BAD_JSON"),
        ({"device_keys": {"user_id": OWNER_ID}}, "M_BAD_JSON"),
        ({"device_keys": "UNSIGNED"}, "M_BAD_JSON"),
        ({"device_keys": "OTHER_USER"}, "M_INVALID_PARAM"),
        ({"device_keys": "OTHER_DEVICE"}, "M_INVALID_PARAM"),
        ({"device_keys": "BAD_SIGNATURE"}, "M_INVALID_PARAM"),
        ({"device_keys": "NO_ED25519"}, "M_INVALID_PARAM"),
        ({"one_time_keys": {"nocolon": "abc"}}, "M_INVALID_PARAM"),
        ({"one_time_keys": {"signed_curve25519:A": "plain"}}, "M_BAD_JSON"),
        ({"one_time_keys": {"signed_curve25519:A": {"key": 5}}}, "M_BAD_JSON"),
        ({"one_time_keys": ["x"]}, "M_BAD_JSON"),
        ({"one_time_keys": {"curve25519:A": 1.5}}, "M_BAD_JSON"),
        ({"fallback_keys": {"curve25519:A": "x", "curve25519:B": "y"}}, "M_INVALID_PARAM"),
    ],
)
async def test_bad_uploads(
    http: aiohttp.ClientSession, v3: str, dev1: Device, body: dict[str, Any], errcode: str
) -> None:
    special = {
        "UNSIGNED": _unsigned(dev1),
        "OTHER_USER": sign(
            {**_unsigned(dev1), "user_id": "@eve:127.0.0.1:8448"}, dev1.key, "@eve:127.0.0.1:8448"
        ),
        "OTHER_DEVICE": Device("DEV9", "", ed25519_key("DEV9")).device_keys(),
        "BAD_SIGNATURE": sign(_unsigned(dev1), ed25519_key("DEV1")),
        "NO_ED25519": sign({**_unsigned(dev1), "keys": {"curve25519:DEV1": "x"}}, dev1.key),
    }
    if isinstance(body.get("device_keys"), str) and body["device_keys"] in special:
        body = {"device_keys": special[body["device_keys"]]}
    got = await upload(http, v3, dev1, body, status=400)
    assert got["errcode"] == errcode


async def test_reused_one_time_key_id_with_other_content_is_refused(
    http: aiohttp.ClientSession, v3: str, dev1: Device
) -> None:
    await upload(http, v3, dev1, {"one_time_keys": {"signed_curve25519:A": dev1.one_time_key()}})
    got = await upload(
        http, v3, dev1, {"one_time_keys": {"signed_curve25519:A": dev1.one_time_key()}}, status=400
    )
    assert got["errcode"] == "M_INVALID_PARAM"


@pytest.mark.parametrize(
    ("path", "body", "errcode"),
    [
        ("/keys/query", {}, "M_MISSING_PARAM"),
        ("/keys/query", {"device_keys": []}, "M_BAD_JSON"),
        ("/keys/query", {"device_keys": {"not-a-user": []}}, "M_INVALID_PARAM"),
        ("/keys/query", {"device_keys": {OWNER_ID: "DEV1"}}, "M_BAD_JSON"),
        ("/keys/claim", {}, "M_MISSING_PARAM"),
        ("/keys/claim", {"one_time_keys": {OWNER_ID: ["DEV1"]}}, "M_BAD_JSON"),
        ("/keys/claim", {"one_time_keys": {OWNER_ID: {"DEV1": 1}}}, "M_BAD_JSON"),
    ],
)
async def test_bad_queries_and_claims(
    http: aiohttp.ClientSession, v3: str, dev1: Device, path: str, body: Any, errcode: str
) -> None:
    got = await call(http, "POST", v3 + path, dev1.token, body, status=400)
    assert got["errcode"] == errcode


async def test_keys_need_an_access_token(http: aiohttp.ClientSession, v3: str) -> None:
    got = await call(http, "POST", f"{v3}/keys/upload", None, {}, status=401)
    assert got["errcode"] == "M_MISSING_TOKEN"
