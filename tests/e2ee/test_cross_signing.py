"""Cross-signing keys (with user-interactive auth) and signature uploads on a real node."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from signedjson.types import SigningKey

from node.client_api.uia import SESSION_LIFETIME_S, UiaSessions
from tests.conftest import OWNER, PASSWORD
from tests.e2ee.conftest import OWNER_ID, Device, call, ed25519_key, public, sign


def cs_key(usage: str, key: SigningKey, signer: SigningKey | None = None) -> dict[str, Any]:
    obj = {"user_id": OWNER_ID, "usage": [usage], "keys": {f"ed25519:{public(key)}": public(key)}}
    return sign(obj, signer) if signer is not None else obj


class Keys:
    def __init__(self) -> None:
        self.master = ed25519_key()
        self.ssk = ed25519_key()
        self.usk = ed25519_key()

    def body(self) -> dict[str, Any]:
        return {
            "master_key": cs_key("master", self.master),
            "self_signing_key": cs_key("self_signing", self.ssk, self.master),
            "user_signing_key": cs_key("user_signing", self.usk, self.master),
        }


def password_auth(session: str, password: str = PASSWORD) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER},
        "password": password,
        "session": session,
    }


async def upload_cs(
    http: aiohttp.ClientSession, v3: str, dev: Device, body: Any, status: int = 200
) -> Any:
    return await call(
        http, "POST", f"{v3}/keys/device_signing/upload", dev.token, body, status=status
    )


async def test_first_upload_needs_no_auth_and_shows_in_query(
    http: aiohttp.ClientSession, v3: str, dev1: Device
) -> None:
    keys = Keys()
    assert await upload_cs(http, v3, dev1, keys.body()) == {}
    # Repeating the same keys is idempotent: still no auth.
    assert await upload_cs(http, v3, dev1, keys.body()) == {}
    got = await call(http, "POST", f"{v3}/keys/query", dev1.token, {"device_keys": {OWNER_ID: []}})
    body = keys.body()
    assert got["master_keys"][OWNER_ID] == body["master_key"]
    assert got["self_signing_keys"][OWNER_ID] == body["self_signing_key"]
    assert got["user_signing_keys"][OWNER_ID] == body["user_signing_key"]


async def test_replacing_keys_needs_the_password(
    http: aiohttp.ClientSession, v3: str, dev1: Device
) -> None:
    await upload_cs(http, v3, dev1, Keys().body())
    new = Keys().body()
    challenge = await upload_cs(http, v3, dev1, new, status=401)
    assert challenge["flows"] == [{"stages": ["m.login.password"]}]
    assert "errcode" not in challenge
    session = challenge["session"]
    wrong = await upload_cs(
        http, v3, dev1, {**new, "auth": password_auth(session, "nope")}, status=401
    )
    assert wrong["errcode"] == "M_FORBIDDEN" and wrong["session"] == session
    other_type = await upload_cs(
        http, v3, dev1, {**new, "auth": {"type": "m.login.dummy", "session": session}}, status=401
    )
    assert other_type["flows"] and other_type["errcode"]
    unknown = await upload_cs(http, v3, dev1, {**new, "auth": password_auth("bogus")}, status=401)
    assert unknown["session"] != "bogus"
    assert await upload_cs(http, v3, dev1, {**new, "auth": password_auth(session)}) == {}
    got = await call(http, "POST", f"{v3}/keys/query", dev1.token, {"device_keys": {OWNER_ID: []}})
    assert got["master_keys"][OWNER_ID] == new["master_key"]
    # A completed session may be replayed for the same request, not for another one.
    assert await upload_cs(http, v3, dev1, {**new, "auth": {"session": session}}) == {}
    other = await upload_cs(
        http, v3, dev1, {**Keys().body(), "auth": {"session": session}}, status=403
    )
    assert other["errcode"] == "M_FORBIDDEN"


def test_ui_auth_sessions_are_bound_to_user_and_request_and_expire() -> None:
    now = [0.0]
    sessions = UiaSessions(clock=lambda: now[0])
    sid = sessions.new(OWNER_ID, "POST", "/a", "digest")
    assert sessions.get(sid, OWNER_ID, "POST", "/a") is not None
    assert sessions.get(sid, OWNER_ID, "POST", "/b") is None
    assert sessions.get(sid, OWNER_ID, "DELETE", "/a") is None
    assert sessions.get(sid, "@eve:x", "POST", "/a") is None
    now[0] += SESSION_LIFETIME_S + 1
    assert sessions.get(sid, OWNER_ID, "POST", "/a") is None


@pytest.mark.parametrize(
    ("mutate", "status", "errcode"),
    [
        (lambda b, k: b.update(master_key="x"), 400, "M_BAD_JSON"),
        (
            lambda b, k: b["master_key"].update(user_id="@eve:127.0.0.1:8448"),
            400,
            "M_INVALID_PARAM",
        ),
        (lambda b, k: b["master_key"].update(usage=["self_signing"]), 400, "M_INVALID_PARAM"),
        (lambda b, k: b["master_key"].update(keys={"ed25519:abc": "abc"}), 400, "M_INVALID_PARAM"),
        (lambda b, k: b["master_key"]["keys"].update({"ed25519:x": "x"}), 400, "M_INVALID_PARAM"),
        (
            lambda b, k: b.update(self_signing_key=cs_key("self_signing", k.ssk, k.usk)),
            400,
            "M_INVALID_SIGNATURE",
        ),
        (
            lambda b, k: b.update(self_signing_key=cs_key("self_signing", k.ssk)),
            400,
            "M_INVALID_SIGNATURE",
        ),
        (lambda b, k: b.pop("master_key"), 400, "M_MISSING_PARAM"),
    ],
)
async def test_bad_cross_signing_uploads(
    http: aiohttp.ClientSession, v3: str, dev1: Device, mutate: Any, status: int, errcode: str
) -> None:
    keys = Keys()
    body = keys.body()
    mutate(body, keys)
    got = await upload_cs(http, v3, dev1, body, status=status)
    assert got["errcode"] == errcode


async def test_key_id_colliding_with_a_device_id_is_forbidden(
    http: aiohttp.ClientSession, v3: str, client_url: str, dev1: Device
) -> None:
    from tests.e2ee.conftest import login

    keys = Keys()
    await login(http, client_url, public(keys.master))
    got = await upload_cs(http, v3, dev1, keys.body(), status=403)
    assert got["errcode"] == "M_FORBIDDEN"


async def test_signatures_upload(
    http: aiohttp.ClientSession, v3: str, dev1: Device, dev2: Device
) -> None:
    keys = Keys()
    await upload_cs(http, v3, dev1, keys.body())
    await call(http, "POST", f"{v3}/keys/upload", dev1.token, {"device_keys": dev1.device_keys()})
    dev2_keys = dev2.device_keys()
    await call(http, "POST", f"{v3}/keys/upload", dev2.token, {"device_keys": dev2_keys})

    master = keys.body()["master_key"]
    signed_device = sign(dev2_keys, keys.ssk)  # self-signing key signs own device
    signed_master = sign(master, dev1.key)  # a device signs the master key
    bad_device = sign(dev1.device_keys(), keys.usk)  # wrong key for own devices
    forged = {**sign(dev2_keys, keys.ssk), "algorithms": ["changed"]}
    body = {
        OWNER_ID: {
            "DEV2": signed_device,
            public(keys.master): signed_master,
            "DEV1": bad_device,
            "NOSUCH": signed_device,
            "DEV1X": "not an object",
        },
        "@bob:elsewhere.example": {"KEY": {"user_id": "@bob:elsewhere.example"}},
    }
    got = await call(http, "POST", f"{v3}/keys/signatures/upload", dev1.token, body)
    failures = got["failures"]
    assert set(failures[OWNER_ID]) == {"DEV1", "NOSUCH", "DEV1X"}
    assert failures[OWNER_ID]["DEV1"]["errcode"] == "M_INVALID_SIGNATURE"
    assert failures[OWNER_ID]["NOSUCH"]["errcode"] == "M_NOT_FOUND"
    assert failures[OWNER_ID]["DEV1X"]["errcode"] == "M_BAD_JSON"
    assert "elsewhere.example" not in failures and "@bob:elsewhere.example" in failures

    forged_got = await call(
        http, "POST", f"{v3}/keys/signatures/upload", dev1.token, {OWNER_ID: {"DEV2": forged}}
    )
    assert forged_got["failures"][OWNER_ID]["DEV2"]["errcode"] == "M_INVALID_PARAM"
    bad_sig = dict(signed_device)
    bad_sig["signatures"] = {OWNER_ID: {f"ed25519:{public(keys.ssk)}": "A" * 86}}
    bad_got = await call(
        http, "POST", f"{v3}/keys/signatures/upload", dev1.token, {OWNER_ID: {"DEV2": bad_sig}}
    )
    assert bad_got["failures"][OWNER_ID]["DEV2"]["errcode"] == "M_INVALID_SIGNATURE"

    query = await call(
        http, "POST", f"{v3}/keys/query", dev2.token, {"device_keys": {OWNER_ID: []}}
    )
    dev2_sigs = query["device_keys"][OWNER_ID]["DEV2"]["signatures"][OWNER_ID]
    assert dev2_sigs == signed_device["signatures"][OWNER_ID]
    master_sigs = query["master_keys"][OWNER_ID]["signatures"][OWNER_ID]
    assert master_sigs == signed_master["signatures"][OWNER_ID]


async def test_signatures_upload_rejects_bad_bodies(
    http: aiohttp.ClientSession, v3: str, dev1: Device
) -> None:
    got = await call(
        http, "POST", f"{v3}/keys/signatures/upload", dev1.token, {"nope": {}}, status=400
    )
    assert got["errcode"] == "M_INVALID_PARAM"
    got = await call(
        http, "POST", f"{v3}/keys/signatures/upload", dev1.token, {OWNER_ID: []}, status=400
    )
    assert got["errcode"] == "M_BAD_JSON"
