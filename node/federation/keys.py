"""This server's signing key, its retired keys, and the key document it publishes.

Spec: content/server-server-api.md "Retrieving server keys" / "Publishing Keys";
api/server-server/keys_server.yaml (GET /_matrix/key/v2/server). The key file
uses the common homeserver format, one ``ed25519 <version> <unpadded base64 seed>``
line per key, and is created with mode 0600.

Rotation (``croft keys rotate``, see :func:`rotate_signing_key`): a new key becomes
the current one and the previous key is retired. Only the public half of a retired
key is kept, in the ``old_verify_keys`` file next to the key file, one
``ed25519 <version> <unpadded base64 public key> <expired_ts>`` line per key; the
key document lists these under ``old_verify_keys`` ("only valid for signing events":
peers still check our old events with them, never requests).
"""

from __future__ import annotations

import os
import secrets
import string
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.events.signing import (
    SigningKey,
    VerifyKey,
    decode_verify_key_base64,
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
class OldVerifyKey:
    """A retired key of this server: its public half and when it stopped being used."""

    key_id: str
    verify_key: VerifyKey
    expired_ts: int

    @property
    def verify_key_base64(self) -> str:
        return encode_verify_key_base64(self.verify_key)


@dataclass(frozen=True)
class ServerKey:
    server_name: str
    signing_key: SigningKey
    old_keys: tuple[OldVerifyKey, ...] = ()

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
            "old_verify_keys": {
                old.key_id: {"key": old.verify_key_base64, "expired_ts": old.expired_ts}
                for old in self.old_keys
                if old.key_id != self.key_id
            },
        }
        return self.sign(doc)

    def verify_key(self, key_id: str) -> tuple[VerifyKey, int | None] | None:
        """Our own key ``key_id``: (public key, expired_ts or None if current), or None."""
        if key_id == self.key_id:
            return get_verify_key(self.signing_key), None
        for old in self.old_keys:
            if old.key_id == key_id:
                return old.verify_key, old.expired_ts
        return None


def new_key_version(taken: Collection[str] = ()) -> str:
    # Key versions match [a-zA-Z0-9_]; a random one avoids clashes after a re-init.
    alphabet = string.ascii_letters + string.digits
    while True:
        version = "a_" + "".join(secrets.choice(alphabet) for _ in range(4))
        if version not in taken:
            return version


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


# -- retired keys (the old_verify_keys file) ---------------------------------------------


def read_old_verify_keys(path: Path) -> tuple[OldVerifyKey, ...]:
    """The retired keys listed in ``path``; none if the file does not exist."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return ()
    except (OSError, ValueError) as e:
        raise KeyFileError(f"{path}: cannot read ({e})") from None
    keys: list[OldVerifyKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        try:
            if len(parts) != 4 or not parts[3].isdigit():
                raise ValueError("expected '<alg> <version> <base64 public key> <expired_ts>'")
            key = decode_verify_key_base64(parts[0], parts[1], parts[2])
        except ValueError as e:
            raise KeyFileError(f"{path}: line {number}: {e}") from None
        keys.append(OldVerifyKey(verify_key_id(key), key, int(parts[3])))
    return tuple(keys)


def write_old_verify_keys(path: Path, keys: Iterable[OldVerifyKey]) -> None:
    """Write the retired keys file atomically (public keys: mode 0644)."""
    lines = [
        "# Retired signing keys of this server (public halves), published in\n",
        "# old_verify_keys: <alg> <version> <base64 public key> <expired_ts in ms>\n",
    ]
    for old in keys:
        alg, _, version = old.key_id.partition(":")
        lines.append(f"{alg} {version} {old.verify_key_base64} {old.expired_ts}\n")
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_server_key(server_name: str, key_path: Path, old_keys_path: Path) -> ServerKey:
    """Our current key (first key of the key file) and our retired keys."""
    signing_key = load_signing_key_file(key_path)
    return ServerKey(server_name, signing_key, read_old_verify_keys(old_keys_path))


def rotate_signing_key(
    key_path: Path, old_keys_path: Path, now_ms: int | None = None
) -> tuple[SigningKey, OldVerifyKey]:
    """Make a new current key; retire the previous one with ``expired_ts = now``.

    The retired key is added to the old keys file before the key file is replaced, so
    an interruption leaves either nothing changed or the previous key both current and
    listed as old (ignored in the key document; running this again finishes it). The
    running node reads keys at start only: rotate, then restart it."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    current = load_signing_key_file(key_path)
    old_keys = read_old_verify_keys(old_keys_path)
    retired = OldVerifyKey(verify_key_id(current), get_verify_key(current), now_ms)
    kept = [k for k in old_keys if k.key_id != retired.key_id]
    write_old_verify_keys(old_keys_path, [*kept, retired])
    taken = {current.version} | {k.key_id.partition(":")[2] for k in old_keys}
    new = generate_signing_key(new_key_version(taken))
    write_signing_key_file(key_path, [new])
    return new, retired
