"""The first client endpoints against a real node on loopback, with real clients."""

from __future__ import annotations

from typing import Any

import aiohttp
import nio
import pytest

from node.app import RunningNode
from tests.conftest import OWNER, PASSWORD, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"


async def login(http: aiohttp.ClientSession, url: str, **extra: Any) -> dict[str, Any]:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER},
        "password": PASSWORD,
        **extra,
    }
    async with http.post(f"{url}/_matrix/client/v3/login", json=body) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_matrix_nio_logs_in_and_whoami_answers_owner(client_url: str) -> None:
    client = nio.AsyncClient(client_url, OWNER)
    try:
        resp = await client.login(PASSWORD, device_name="nio test")
        assert isinstance(resp, nio.LoginResponse), resp
        assert resp.user_id == OWNER_ID
        who = await client.whoami()
        assert isinstance(who, nio.WhoamiResponse), who
        assert who.user_id == OWNER_ID
        assert who.device_id == resp.device_id
    finally:
        await client.close()


async def test_versions_and_login_flows(client_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{client_url}/_matrix/client/versions") as r:
        body = await r.json()
        assert r.status == 200
        assert "v1.11" in body["versions"]
    async with http.get(f"{client_url}/_matrix/client/v3/login") as r:
        assert (await r.json()) == {"flows": [{"type": "m.login.password"}]}


async def test_well_known_points_at_the_client_api(
    client_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{client_url}/.well-known/matrix/client") as r:
        assert r.status == 200
        assert (await r.json()) == {"m.homeserver": {"base_url": client_url}}


async def test_login_with_full_user_id_and_device_id(
    client_url: str, http: aiohttp.ClientSession
) -> None:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER_ID},
        "password": PASSWORD,
        "device_id": "MYDEVICE",
    }
    async with http.post(f"{client_url}/_matrix/client/v3/login", json=body) as r:
        data = await r.json()
    assert data["device_id"] == "MYDEVICE"
    assert data["user_id"] == OWNER_ID


@pytest.mark.parametrize(
    ("body", "status", "errcode"),
    [
        (b"not json", 400, "M_NOT_JSON"),
        (b"[1,2]", 400, "M_BAD_JSON"),
        (b"", 400, "M_NOT_JSON"),
        (
            b'{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},'
            b' "password": "wrong"}',
            403,
            "M_FORBIDDEN",
        ),
        (
            b'{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},'
            b' "password": "x"}',
            403,
            "M_FORBIDDEN",
        ),
        (
            b'{"type": "m.login.password", "identifier": {"type": "m.id.user",'
            b' "user": "@alice:elsewhere.org"}, "password": "x"}',
            403,
            "M_FORBIDDEN",
        ),
        (b'{"type": "m.login.token", "token": "x"}', 400, "M_UNKNOWN"),
        (
            b'{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": 5},'
            b' "password": "x"}',
            400,
            "M_BAD_JSON",
        ),
        (
            b'{"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}}',
            400,
            "M_MISSING_PARAM",
        ),
        (b'{"password": "x"}', 400, "M_MISSING_PARAM"),
        (
            b'{"type": "m.login.password", "identifier": "alice", "password": "x"}',
            400,
            "M_BAD_JSON",
        ),
    ],
)
async def test_bad_logins(
    client_url: str, http: aiohttp.ClientSession, body: bytes, status: int, errcode: str
) -> None:
    async with http.post(f"{client_url}/_matrix/client/v3/login", data=body) as r:
        assert r.status == status
        assert (await r.json())["errcode"] == errcode


async def test_repeated_failed_logins_are_rate_limited(
    client_url: str, http: aiohttp.ClientSession
) -> None:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER},
        "password": "wrong",
    }
    codes = []
    for _ in range(8):
        async with http.post(f"{client_url}/_matrix/client/v3/login", json=body) as r:
            data = await r.json()
            codes.append(data["errcode"])
            if r.status == 429:
                assert data["retry_after_ms"] > 0
    assert codes[:5] == ["M_FORBIDDEN"] * 5
    assert codes[-1] == "M_LIMIT_EXCEEDED"


async def test_missing_and_unknown_tokens(client_url: str, http: aiohttp.ClientSession) -> None:
    url = f"{client_url}/_matrix/client/v3/account/whoami"
    async with http.get(url) as r:
        assert r.status == 401
        assert (await r.json())["errcode"] == "M_MISSING_TOKEN"
    async with http.get(url, headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401
        body = await r.json()
        assert body["errcode"] == "M_UNKNOWN_TOKEN"
        assert body["soft_logout"] is False
    async with http.get(url, headers={"Authorization": "Basic abc"}) as r:
        assert r.status == 401
        assert (await r.json())["errcode"] == "M_MISSING_TOKEN"


async def test_query_parameter_token_and_logout(
    client_url: str, http: aiohttp.ClientSession
) -> None:
    session = await login(http, client_url)
    token = session["access_token"]
    async with http.get(
        f"{client_url}/_matrix/client/v3/account/whoami", params={"access_token": token}
    ) as r:
        assert (await r.json())["user_id"] == OWNER_ID
    async with http.post(
        f"{client_url}/_matrix/client/v3/logout", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 200
    async with http.get(
        f"{client_url}/_matrix/client/v3/account/whoami",
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        assert r.status == 401
        assert (await r.json())["errcode"] == "M_UNKNOWN_TOKEN"


async def test_logout_all_ends_every_session(
    client_url: str, http: aiohttp.ClientSession, node: RunningNode
) -> None:
    tokens = [(await login(http, client_url))["access_token"] for _ in range(3)]
    async with http.post(
        f"{client_url}/_matrix/client/v3/logout/all",
        headers={"Authorization": f"Bearer {tokens[0]}"},
    ) as r:
        assert r.status == 200
    for token in tokens:
        async with http.get(
            f"{client_url}/_matrix/client/v3/account/whoami",
            headers={"Authorization": f"Bearer {token}"},
        ) as r:
            assert r.status == 401
    assert await node.node.accounts.store.count_tokens() == 0


async def test_unknown_endpoint_and_method(client_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{client_url}/_matrix/client/v3/nonexistent") as r:
        assert r.status == 404
        assert (await r.json())["errcode"] == "M_UNRECOGNIZED"
    async with http.delete(f"{client_url}/_matrix/client/v3/login") as r:
        assert r.status == 405
        assert (await r.json())["errcode"] == "M_UNRECOGNIZED"


async def test_cors_headers_and_preflight(client_url: str, http: aiohttp.ClientSession) -> None:
    async with http.options(
        f"{client_url}/_matrix/client/v3/rooms/x/send/m.room.message/1",
        headers={"Origin": "https://app.element.io", "Access-Control-Request-Method": "PUT"},
    ) as r:
        assert r.status in (200, 204)
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "PUT" in r.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    async with http.get(f"{client_url}/_matrix/client/v3/account/whoami") as r:
        assert r.status == 401
        assert r.headers["Access-Control-Allow-Origin"] == "*"


async def test_tui_token_from_init_works(
    client_url: str, http: aiohttp.ClientSession, node: RunningNode
) -> None:
    token_file = node.node.config.data_dir / "tui.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    async with http.get(
        f"{client_url}/_matrix/client/v3/account/whoami",
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        body = await r.json()
    assert body["user_id"] == OWNER_ID
    assert body["device_id"] == "CROFTTUI"
