"""Pushers go with the device whose access token set them: logout, logout/all,
DELETE /devices, POST /delete_devices and a password change that logs out the other
devices remove them (as Synapse does; the spec has no words on it), and a start-up
sweep removes those of devices deleted before (node/push/service.py).

Spec: api/client-server/pusher.yaml, logout.yaml, device_management.yaml,
password_management.yaml.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import nio

from node.app import RunningNode, serve
from node.config import Config
from node.push.store import Pusher
from tests.conftest import OWNER, PASSWORD
from tests.push.conftest import OWNER_ID, Gateway, call, login
from tests.push.test_push_delivery import bob_joins, bob_says
from tests.users.test_devices import uia

APP_ID = "org.example.croft.devices"


def pusher_body(pushkey: str, url: str = "https://push.example.org/_matrix/push/v1/notify") -> Any:
    return {
        "kind": "http",
        "app_id": APP_ID,
        "pushkey": pushkey,
        "app_display_name": "Croft test",
        "device_display_name": pushkey,
        "lang": "en",
        "data": {"url": url},
    }


async def set_pusher(http: aiohttp.ClientSession, v3: str, token: str, pushkey: str) -> None:
    assert await call(http, "POST", f"{v3}/pushers/set", token, pusher_body(pushkey)) == {}


async def pushkeys(http: aiohttp.ClientSession, v3: str, token: str) -> set[str]:
    listed = await call(http, "GET", f"{v3}/pushers", token)
    return {p["pushkey"] for p in listed["pushers"]}


async def test_logout_removes_only_that_devices_pushers(
    http: aiohttp.ClientSession, client_url: str, v3: str, token: str
) -> None:
    phone = nio.AsyncClient(client_url, OWNER)
    try:
        assert isinstance(await phone.login(PASSWORD, device_name="phone"), nio.LoginResponse)
        await set_pusher(http, v3, phone.access_token, "phone-key")
        await set_pusher(http, v3, token, "laptop-key")
        assert await pushkeys(http, v3, token) == {"phone-key", "laptop-key"}
        logged_out = await phone.logout()
        assert isinstance(logged_out, nio.LogoutResponse), logged_out
    finally:
        await phone.close()
    assert await pushkeys(http, v3, token) == {"laptop-key"}


async def test_logout_all_removes_every_pusher(
    http: aiohttp.ClientSession, client_url: str, v3: str, token: str
) -> None:
    other = await login(http, client_url, "OTHER")
    await set_pusher(http, v3, token, "one")
    await set_pusher(http, v3, other, "two")
    await call(http, "POST", f"{v3}/logout/all", token, {})
    fresh = await login(http, client_url, "PUSHDEV")  # the same device ID as before
    assert await pushkeys(http, v3, fresh) == set()


async def test_deleting_devices_removes_their_pushers(
    http: aiohttp.ClientSession, client_url: str, v3: str, token: str
) -> None:
    tablet = await login(http, client_url, "TABLET")
    watch = await login(http, client_url, "WATCH")
    tv = await login(http, client_url, "TV")
    for device_token, key in ((token, "mine"), (tablet, "tablet"), (watch, "watch"), (tv, "tv")):
        await set_pusher(http, v3, device_token, key)
    # A device with two tokens: its pushers go when the device goes, whichever set them.
    tv_again = await login(http, client_url, "TV")
    await set_pusher(http, v3, tv_again, "tv-2")

    await uia(http, "DELETE", f"{v3}/devices/TABLET", token, {})
    assert await pushkeys(http, v3, token) == {"mine", "watch", "tv", "tv-2"}
    await uia(http, "POST", f"{v3}/delete_devices", token, {"devices": ["WATCH", "TV"]})
    assert await pushkeys(http, v3, token) == {"mine"}
    # Deleting a device that has no pushers (or is unknown) leaves the others alone.
    await uia(http, "POST", f"{v3}/delete_devices", token, {"devices": ["NOSUCH"]})
    assert await pushkeys(http, v3, token) == {"mine"}


async def test_password_change_removes_the_other_devices_pushers(
    http: aiohttp.ClientSession, client_url: str, v3: str, token: str
) -> None:
    other = await login(http, client_url, "OTHER")
    await set_pusher(http, v3, token, "mine")
    await set_pusher(http, v3, other, "theirs")
    # Keeping the other devices keeps their pushers.
    await uia(
        http,
        "POST",
        f"{v3}/account/password",
        token,
        {"new_password": PASSWORD, "logout_devices": False},
    )
    assert await pushkeys(http, v3, token) == {"mine", "theirs"}
    await uia(http, "POST", f"{v3}/account/password", token, {"new_password": PASSWORD})
    assert await pushkeys(http, v3, token) == {"mine"}


async def test_a_logged_out_devices_pusher_gets_no_more_pushes(
    http: aiohttp.ClientSession,
    client_url: str,
    v3: str,
    token: str,
    node: RunningNode,
    gateway: Gateway,
) -> None:
    phone = await login(http, client_url, "PHONE")
    await call(http, "POST", f"{v3}/pushers/set", phone, pusher_body("phone-key", gateway.url))
    room_id = (await call(http, "POST", f"{v3}/createRoom", token, {"preset": "public_chat"}))[
        "room_id"
    ]
    await bob_joins(node, room_id)
    first = await bob_says(node, room_id, "are you there?")
    got = await gateway.next()
    assert got["notification"]["event_id"] == first
    assert got["notification"]["devices"][0]["pushkey"] == "phone-key"

    await call(http, "POST", f"{v3}/logout", phone, {})
    await bob_says(node, room_id, "hello?")
    await node.node.push.gateway.idle()
    assert gateway.received.empty()
    # The notification is still counted for the user; only the push is gone.
    assert await node.node.push.unread_counts(room_id, OWNER_ID) == (2, 0)


async def test_start_up_sweeps_pushers_of_deleted_devices(config: Config) -> None:
    running = await serve(config)
    try:
        client_url = f"http://{running.listeners['client']}"
        v3 = f"{client_url}/_matrix/client/v3"
        async with aiohttp.ClientSession() as http:
            token = await login(http, client_url, "KEEP")
            await set_pusher(http, v3, token, "kept")
        store = running.node.push.store
        # Left behind as a Croft without the hook (or a crash after the logout) would.
        gone = Pusher(OWNER_ID, APP_ID, "gone", "http", "a", "d", None, "en", {}, "GONE")
        await store.add_pusher(gone, append=True)
        # Nothing says which session a pusher without a device belongs to: it stays.
        unowned = Pusher(OWNER_ID, APP_ID, "unowned", "http", "a", "d", None, "en", {}, None)
        await store.add_pusher(unowned, append=True)
        assert {p.pushkey for p in await store.get_pushers(OWNER_ID)} == {
            "kept",
            "gone",
            "unowned",
        }
    finally:
        await running.stop()
    running = await serve(config)
    try:
        left = await running.node.push.store.get_pushers(OWNER_ID)
        assert {p.pushkey for p in left} == {"kept", "unowned"}
    finally:
        await running.stop()
