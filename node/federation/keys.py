"""This server's signing key and the key document it publishes.

Spec: content/server-server-api.md "Retrieving server keys" / "Publishing Keys";
api/server-server/keys_server.yaml (GET /_matrix/key/v2/server). The key file
uses the common homeserver format, one ``ed25519 <version> <unpadded base64 seed>``
line per key, and is created with mode 0600.
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.events.signing import (
    SigningKey,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    read_signing_key_file,
    sign_json,
    verify_key_id,
    write_signing_key_file,
)

# How long other servers may cache our key document before asking again.
KEY_VALIDITY_MS = 24 * 3600 * 1000


class KeyFileError(Exception):
    pass


@dataclass(frozen=True)
class ServerKey:
    server_name: str
    signing_key: SigningKey

    @property
    def key_id(self) -> str:
        return verify_key_id(self.signing_key)

    @property
    def verify_key_base64(self) -> str:
        return encode_verify_key_base64(get_verify_key(self.signing_key))

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Sign a JSON object (the Signing JSON algorithm); returns a new object."""
        return sign_json(obj, self.server_name, self.signing_key)

    def key_document(self, now_ms: int | None = None) -> dict[str, Any]:
        """The signed body of GET /_matrix/key/v2/server."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        doc: dict[str, Any] = {
            "server_name": self.server_name,
            "valid_until_ts": now_ms + KEY_VALIDITY_MS,
            "verify_keys": {self.key_id: {"key": self.verify_key_base64}},
            "old_verify_keys": {},
        }
        return self.sign(doc)


def new_key_version() -> str:
    # Key versions match [a-zA-Z0-9_]; a random one avoids clashes after a re-init.
    alphabet = string.ascii_letters + string.digits
    return "a_" + "".join(secrets.choice(alphabet) for _ in range(4))


def create_signing_key_file(path: Path) -> SigningKey:
    if path.exists():
        raise KeyFileError(f"{path}: a signing key already exists")
    key = generate_signing_key(new_key_version())
    write_signing_key_file(path, [key])
    return key


def load_signing_key_file(path: Path) -> SigningKey:
    try:
        keys = read_signing_key_file(path)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: signing key file is missing") from None
    except (OSError, ValueError) as e:
        raise KeyFileError(f"{path}: not a valid signing key file ({e})") from None
    if not keys:
        raise KeyFileError(f"{path}: no signing key in the file")
    return keys[0]
