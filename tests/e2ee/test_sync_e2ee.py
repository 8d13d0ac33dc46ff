"""The E2EE sections of /sync: device_lists, device_one_time_keys_count and
device_unused_fallback_key_types, on a real node."""

from __future__ import annotations

import aiohttp

from tests.e2ee.conftest import OWNER_ID, Device, call
from tests.e2ee.test_to_device import sync


async def test_counts_and_fallback_types_are_always_present(
    http: aiohttp.ClientSession, v3: str, dev1: Device, dev2: Device
) -> None:
    first = await sync(http, v3, dev1)
    assert first["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert first["device_unused_fallback_key_types"] == []
    assert "device_lists" not in first  # only on incremental syncs
    await call(
        http,
        "POST",
        f"{v3}/keys/upload",
        dev1.token,
        {
            "one_time_keys": {
                "signed_curve25519:A": dev1.one_time_key(),
                "signed_curve25519:B": dev1.one_time_key(),
            },
            "fallback_keys": {"signed_curve25519:F": dev1.one_time_key(fallback=True)},
        },
    )
    got = await sync(http, v3, dev1, first["next_batch"])
    assert got["device_one_time_keys_count"] == {"signed_curve25519": 2}
    assert got["device_unused_fallback_key_types"] == ["signed_curve25519"]
    # Another device's sync reports its own counts.
    assert (await sync(http, v3, dev2))["device_one_time_keys_count"] == {"signed_curve25519": 0}
    want = {"one_time_keys": {OWNER_ID: {"DEV1": "signed_curve25519"}}}
    for _ in range(3):
        await call(http, "POST", f"{v3}/keys/claim", dev2.token, want)
    got = await sync(http, v3, dev1, got["next_batch"])
    assert got["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert got["device_unused_fallback_key_types"] == []  # used: the client should replace it
    await call(
        http,
        "POST",
        f"{v3}/keys/upload",
        dev1.token,
        {
            "fallback_keys": {"signed_curve25519:G": dev1.one_time_key(fallback=True)},
        },
    )
    got = await sync(http, v3, dev1, got["next_batch"])
    assert got["device_unused_fallback_key_types"] == ["signed_curve25519"]


async def test_device_lists_changed_for_own_devices(
    http: aiohttp.ClientSession, v3: str, dev1: Device, dev2: Device
) -> None:
    token = (await sync(http, v3, dev1))["next_batch"]
    await call(http, "POST", f"{v3}/keys/upload", dev2.token, {"device_keys": dev2.device_keys()})
    got = await sync(http, v3, dev1, token)
    assert got["device_lists"] == {"changed": [OWNER_ID], "left": []}
    # Nothing new: an empty incremental sync carries no device_lists.
    quiet = await sync(http, v3, dev1, got["next_batch"])
    assert "device_lists" not in quiet
    # Logging a device with keys out is a change too.
    await call(http, "POST", f"{v3}/logout", dev2.token, {})
    got = await sync(http, v3, dev1, quiet["next_batch"])
    assert got["device_lists"]["changed"] == [OWNER_ID]
