"""Devices and passwords: listing, renaming, deleting behind UIA, last seen, password
changes, and the refused deactivation."""

from __future__ import annotations

from typing import Any

import aiohttp
import nio
import pytest

from node.app import RunningNode
from tests.conftest import OWNER, PASSWORD
from tests.users.conftest import OWNER_ID, call, login

PASSWORD_AUTH = {
    "type": "m.login.password",
    "identifier": {"type": "m.id.user", "user": OWNER},
    "password": PASSWORD,
}


async def uia(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str,
    body: dict[str, Any],
    auth: dict[str, Any] = PASSWORD_AUTH,
) -> Any:
    """Make a UIA request the way a client does: without auth, then with the session."""
    challenge = await call(http, method, url, token, body, status=401)
    assert challenge["flows"] == [{"stages": ["m.login.password"]}]
    return await call(
        http, method, url, token, {**body, "auth": {**auth, "session": challenge["session"]}}
    )


async def test_nio_lists_renames_and_deletes_devices(client_url: str) -> None:
    first = nio.AsyncClient(client_url, OWNER)
    second = nio.AsyncClient(client_url, OWNER)
    try:
        await first.login(PASSWORD, device_name="laptop")
        await second.login(PASSWORD, device_name="phone")
        listed = await first.devices()
        assert isinstance(listed, nio.DevicesResponse), listed
        names = {d.id: d.display_name for d in listed.devices}
        assert names[first.device_id] == "laptop" and names[second.device_id] == "phone"
        seen = {d.id: d for d in listed.devices}[first.device_id]
        assert seen.last_seen_ip == "127.0.0.1" and seen.last_seen_date is not None

        renamed = await first.update_device(second.device_id, {"display_name": "old phone"})
        assert isinstance(renamed, nio.UpdateDeviceResponse), renamed
        listed = await first.devices()
        assert isinstance(listed, nio.DevicesResponse)
        assert {d.id: d.display_name for d in listed.devices}[second.device_id] == "old phone"

        # Without auth the server answers with the UIA flows and a session.
        challenge = await first.delete_devices([second.device_id])
        assert isinstance(challenge, nio.DeleteDevicesAuthResponse), challenge
        assert challenge.flows == [{"stages": ["m.login.password"]}]
        auth = {
            "type": "m.login.password",
            "user": OWNER,
            "password": PASSWORD,
            "session": challenge.session,
        }
        deleted = await first.delete_devices([second.device_id], auth)
        assert isinstance(deleted, nio.DeleteDevicesResponse), deleted

        # The deleted device's token no longer works; the other one still does.
        gone = await second.whoami()
        assert isinstance(gone, nio.WhoamiError) and gone.status_code == "M_UNKNOWN_TOKEN"
        assert isinstance(await first.whoami(), nio.WhoamiResponse)
        listed = await first.devices()
        assert isinstance(listed, nio.DevicesResponse)
        ids = {d.id for d in listed.devices}
        assert first.device_id in ids and second.device_id not in ids
    finally:
        await first.close()
        await second.close()


async def test_get_put_and_delete_one_device(
    http: aiohttp.ClientSession, client_url: str, v3: str, token: str, node: RunningNode
) -> None:
    other = await login(http, client_url, "OTHER")
    got = await call(http, "GET", f"{v3}/devices/OTHER", token)
    assert got["device_id"] == "OTHER" and got["display_name"] is None
    assert isinstance(got["last_seen_ts"], int)
    await call(http, "PUT", f"{v3}/devices/OTHER", token, {"display_name": "tablet"})
    await call(http, "PUT", f"{v3}/devices/OTHER", token, {})  # nothing to change
    got = await call(http, "GET", f"{v3}/devices/OTHER", token)
    assert got["display_name"] == "tablet"

    # A wrong password is another 401, with an error, in the same session.
    challenge = await call(http, "DELETE", f"{v3}/devices/OTHER", token, {}, status=401)
    wrong = {**PASSWORD_AUTH, "password": "nope", "session": challenge["session"]}
    failed = await call(http, "DELETE", f"{v3}/devices/OTHER", token, {"auth": wrong}, status=401)
    assert failed["errcode"] == "M_FORBIDDEN" and failed["session"] == challenge["session"]
    assert (await call(http, "GET", f"{v3}/account/whoami", other))["device_id"] == "OTHER"

    await uia(http, "DELETE", f"{v3}/devices/OTHER", token, {})
    assert (await call(http, "GET", f"{v3}/account/whoami", other, status=401))[
        "errcode"
    ] == "M_UNKNOWN_TOKEN"
    assert (await call(http, "GET", f"{v3}/devices/OTHER", token, status=404))[
        "errcode"
    ] == "M_NOT_FOUND"
    # Deleting a device that is already gone succeeds.
    await uia(http, "DELETE", f"{v3}/devices/OTHER", token, {})


async def test_deleting_the_own_device_ends_the_session(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    await uia(http, "POST", f"{v3}/delete_devices", token, {"devices": ["DEV1"]})
    got = await call(http, "GET", f"{v3}/account/whoami", token, status=401)
    assert got["errcode"] == "M_UNKNOWN_TOKEN"


async def test_last_seen_is_updated_at_most_once_a_minute(
    http: aiohttp.ClientSession, v3: str, token: str, node: RunningNode
) -> None:
    accounts = node.node.accounts
    await call(http, "GET", f"{v3}/account/whoami", token)
    first = await accounts.get_device(OWNER_ID, "DEV1")
    assert first is not None and first.last_seen_ip == "127.0.0.1"
    await call(http, "GET", f"{v3}/account/whoami", token)
    assert (await accounts.get_device(OWNER_ID, "DEV1")) == first  # not written again
    accounts._last_seen.clear()  # as if a minute had passed
    await call(http, "GET", f"{v3}/account/whoami", token)
    later = await accounts.get_device(OWNER_ID, "DEV1")
    assert later is not None and later.last_seen_ts is not None
    assert first.last_seen_ts is not None and later.last_seen_ts >= first.last_seen_ts


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "errcode"),
    [
        ("GET", "/devices/NOPE", None, 404, "M_NOT_FOUND"),
        ("PUT", "/devices/NOPE", {"display_name": "x"}, 404, "M_NOT_FOUND"),
        ("PUT", "/devices/DEV1", {"display_name": 5}, 400, "M_BAD_JSON"),
        ("POST", "/delete_devices", {}, 400, "M_MISSING_PARAM"),
        ("POST", "/delete_devices", {"devices": "DEV1"}, 400, "M_BAD_JSON"),
        ("POST", "/delete_devices", {"devices": [1]}, 400, "M_BAD_JSON"),
        ("POST", "/delete_devices", {"devices": [], "auth": "x"}, 400, "M_BAD_JSON"),
        ("POST", "/account/password", {}, 400, "M_MISSING_PARAM"),
        ("POST", "/account/password", {"new_password": 5}, 400, "M_BAD_JSON"),
        ("POST", "/account/password", {"new_password": ""}, 400, "M_WEAK_PASSWORD"),
        (
            "POST",
            "/account/password",
            {"new_password": "x", "logout_devices": "yes"},
            400,
            "M_BAD_JSON",
        ),
        ("POST", "/account/deactivate", {}, 403, "M_FORBIDDEN"),
    ],
)
async def test_bad_device_and_account_requests(
    http: aiohttp.ClientSession,
    v3: str,
    token: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    errcode: str,
) -> None:
    got = await call(http, method, v3 + path, token, body, status=status)
    assert got["errcode"] == errcode


async def test_unsupported_auth_type_is_refused(
    http: aiohttp.ClientSession, v3: str, token: str
) -> None:
    challenge = await call(http, "POST", f"{v3}/delete_devices", token, {"devices": []}, 401)
    auth = {"type": "m.login.dummy", "session": challenge["session"]}
    got = await call(
        http, "POST", f"{v3}/delete_devices", token, {"devices": [], "auth": auth}, status=401
    )
    assert "errcode" in got and "flows" in got


async def test_password_change_logs_out_other_devices(
    http: aiohttp.ClientSession, client_url: str, v3: str, token: str
) -> None:
    other = await login(http, client_url, "OTHER")
    await uia(http, "POST", f"{v3}/account/password", token, {"new_password": "new secret"})
    # The requester's token stays valid; the other device is gone.
    assert (await call(http, "GET", f"{v3}/account/whoami", token))["device_id"] == "DEV1"
    assert (await call(http, "GET", f"{v3}/account/whoami", other, status=401))[
        "errcode"
    ] == "M_UNKNOWN_TOKEN"
    devices = (await call(http, "GET", f"{v3}/devices", token))["devices"]
    assert [d["device_id"] for d in devices] == ["DEV1"]  # the TUI's device went too
    # The old password no longer logs in; the new one does.
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER},
        "password": PASSWORD,
    }
    async with http.post(f"{v3}/login", json=body) as r:
        assert r.status == 403
        assert (await r.json())["errcode"] == "M_FORBIDDEN"
    async with http.post(f"{v3}/login", json={**body, "password": "new secret"}) as r:
        assert r.status == 200


async def test_password_change_can_keep_other_devices(
    http: aiohttp.ClientSession, client_url: str, v3: str, token: str
) -> None:
    other = await login(http, client_url, "OTHER")
    body = {"new_password": "another secret", "logout_devices": False}
    await uia(http, "POST", f"{v3}/account/password", token, body)
    assert (await call(http, "GET", f"{v3}/account/whoami", other))["device_id"] == "OTHER"
    # UIA now wants the new password.
    challenge = await call(http, "POST", f"{v3}/account/password", token, body, status=401)
    old = {**PASSWORD_AUTH, "session": challenge["session"]}
    failed = await call(
        http, "POST", f"{v3}/account/password", token, {**body, "auth": old}, status=401
    )
    assert failed["errcode"] == "M_FORBIDDEN"
