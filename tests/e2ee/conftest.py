"""Fixtures for the E2EE tests: logged-in devices of the owner on a real node, a JSON
caller, and client-side key material (signedjson Ed25519 keys) to sign uploads with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import signedjson.key
import signedjson.sign
from signedjson.types import SigningKey

from tests.conftest import OWNER, PASSWORD, SERVER_NAME

OWNER_ID = f"@{OWNER}:{SERVER_NAME}"
ALGORITHMS = ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]


def ed25519_key(version: str | None = None) -> SigningKey:
    """A new Ed25519 key; with no version, the version is its own public key (as for
    cross-signing keys, whose key ID is ``ed25519:<public key>``)."""
    key = signedjson.key.generate_signing_key(version or "tmp")
    if version is None:
        public = signedjson.key.encode_verify_key_base64(key.verify_key)
        seed = signedjson.key.encode_signing_key_base64(key)
        key = signedjson.key.decode_signing_key_base64("ed25519", public, seed)
    return key


def public(key: SigningKey) -> str:
    return signedjson.key.encode_verify_key_base64(key.verify_key)


def sign(obj: dict[str, Any], key: SigningKey, user_id: str = OWNER_ID) -> dict[str, Any]:
    return signedjson.sign.sign_json(dict(obj), user_id, key)


@dataclass
class Device:
    """A logged-in device with its own Ed25519 identity key."""

    device_id: str
    token: str
    key: SigningKey
    curve25519: str = field(default_factory=lambda: public(ed25519_key("c")))

    def device_keys(self, user_id: str = OWNER_ID, **extra: Any) -> dict[str, Any]:
        obj = {
            "user_id": user_id,
            "device_id": self.device_id,
            "algorithms": ALGORITHMS,
            "keys": {
                f"ed25519:{self.device_id}": public(self.key),
                f"curve25519:{self.device_id}": self.curve25519,
            },
            **extra,
        }
        return sign(obj, self.key)

    def one_time_key(self, *, fallback: bool = False) -> dict[str, Any]:
        obj: dict[str, Any] = {"key": public(ed25519_key("otk"))}
        if fallback:
            obj["fallback"] = True
        return sign(obj, self.key)


async def login(http: aiohttp.ClientSession, client_url: str, device_id: str) -> str:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER},
        "password": PASSWORD,
        "device_id": device_id,
    }
    async with http.post(f"{client_url}/_matrix/client/v3/login", json=body) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["access_token"])


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None,
    body: Any = None,
    status: int = 200,
    **params: str,
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, json=body, params=params or None, headers=headers) as r:
        data = await r.json()
        assert r.status == status, data
        return data


@pytest.fixture
def v3(client_url: str) -> str:
    return f"{client_url}/_matrix/client/v3"


@pytest.fixture
async def dev1(client_url: str, http: aiohttp.ClientSession) -> Device:
    return Device("DEV1", await login(http, client_url, "DEV1"), ed25519_key("DEV1"))


@pytest.fixture
async def dev2(client_url: str, http: aiohttp.ClientSession) -> Device:
    return Device("DEV2", await login(http, client_url, "DEV2"), ed25519_key("DEV2"))
