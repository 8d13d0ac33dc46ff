"""GET /voip/turnServer against a real node: no TURN, TURN REST API credentials, auth."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.app import RunningNode, serve
from node.config import ConfigError, load_config
from tests.conftest import OWNER, SERVER_NAME
from tests.server.test_client_basics import login

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"
TURN = "/_matrix/client/v3/voip/turnServer"
URIS = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:443?transport=tcp"]


@pytest.fixture
async def turn_node(data_dir: Path) -> AsyncIterator[RunningNode]:
    """A node with TURN set in config.toml's [voip] section, as an operator would."""
    uris = ", ".join(f'"{u}"' for u in URIS)
    set_voip(
        data_dir,
        f'turn_uris = [{uris}]\nturn_shared_secret = "s3cret"\nturn_user_lifetime_s = 3600',
    )
    running = await serve(load_config(data_dir, environ={}))
    try:
        yield running
    finally:
        await running.stop()


def set_voip(data_dir: Path, lines: str) -> None:
    """Put settings under the [voip] table that `croft init` wrote (commented out)."""
    path = data_dir / "config.toml"
    text = path.read_text()
    assert text.count("\n[voip]\n") == 1
    path.write_text(text.replace("\n[voip]\n", f"\n[voip]\n{lines}\n"))


async def get_turn(http: aiohttp.ClientSession, url: str) -> dict[str, object]:
    token = (await login(http, url))["access_token"]
    async with http.get(url + TURN, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_no_turn_configured_answers_empty(
    client_url: str, http: aiohttp.ClientSession
) -> None:
    assert await get_turn(http, client_url) == {}


async def test_turn_credentials_are_time_limited_hmac(
    turn_node: RunningNode, http: aiohttp.ClientSession
) -> None:
    url = f"http://{turn_node.listeners['client']}"
    before = int(time.time())
    body = await get_turn(http, url)
    after = int(time.time())
    assert body["uris"] == URIS
    assert body["ttl"] == 3600
    username = body["username"]
    assert isinstance(username, str)
    expiry, _, user = username.partition(":")
    assert user == OWNER_ID
    assert before + 3600 <= int(expiry) <= after + 3600
    mac = hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()
    assert body["password"] == base64.b64encode(mac).decode()


async def test_turn_needs_an_access_token(
    turn_node: RunningNode, http: aiohttp.ClientSession
) -> None:
    url = f"http://{turn_node.listeners['client']}"
    async with http.get(url + TURN) as r:
        assert r.status == 401
        assert (await r.json())["errcode"] == "M_MISSING_TOKEN"
    async with http.get(url + TURN, headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401
        assert (await r.json())["errcode"] == "M_UNKNOWN_TOKEN"


def test_turn_uris_from_environment_are_comma_separated(data_dir: Path) -> None:
    cfg = load_config(
        data_dir,
        environ={
            "CROFT_VOIP_TURN_URIS": "turn:a.example:3478, turns:b.example:443",
            "CROFT_VOIP_TURN_SHARED_SECRET": "x",
            "CROFT_VOIP_TURN_USER_LIFETIME_S": "60",
        },
    )
    assert cfg.voip.turn_uris == ("turn:a.example:3478", "turns:b.example:443")
    assert cfg.voip.turn_shared_secret == "x"
    assert cfg.voip.turn_user_lifetime_s == 60
    assert load_config(data_dir, environ={}).voip.turn_uris == ()


def test_turn_uris_must_be_strings(data_dir: Path) -> None:
    set_voip(data_dir, "turn_uris = [1, 2]")
    with pytest.raises(ConfigError, match=r"voip\.turn_uris must be a list of strings"):
        load_config(data_dir, environ={})
