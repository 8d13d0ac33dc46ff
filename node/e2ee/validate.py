"""Checking uploaded keys (pure): device keys, one-time and fallback keys, cross-signing keys.

Spec: client-server-api/modules/end_to_end_encryption.md "Key algorithms", "Device keys",
"Uploading keys" (device keys must contain the device's Ed25519 key and be signed by
it), "Cross-signing"; api/client-server/keys.yaml (POST /keys/upload),
definitions/device_keys.yaml, one_time_keys.yaml, cross_signing_key.yaml.

Malformed JSON shapes are M_BAD_JSON; well-formed values that are wrong for this
requester (another user's or device's keys, a bad signature, a key that is not an
Ed25519 public key) are M_INVALID_PARAM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.errors import MatrixError, bad_json, invalid_param
from node.events.canonical import InvalidJson, check_canonical_values
from node.events.signing import SignatureError, VerifyKey, decode_verify_key_base64, verify_json
from node.ids import InvalidId, UserID

ED25519 = "ed25519"
CROSS_SIGNING_USAGES = ("master", "self_signing", "user_signing")

KeyMap = dict[tuple[str, str], Any]  # (algorithm, key_id) -> key (string or KeyObject)


def canonical(value: Any, what: str) -> dict[str, Any]:
    """``value`` as a canonical-JSON-safe object, or M_BAD_JSON naming ``what``."""
    if not isinstance(value, dict):
        raise bad_json(f"'{what}' must be an object")
    try:
        return check_canonical_values(value)  # type: ignore[no-any-return]
    except InvalidJson as e:
        raise bad_json(f"'{what}' is not valid canonical JSON: {e}") from None


def ed25519_key(public_key: str, key_id: str) -> VerifyKey:
    """An Ed25519 verify key from its unpadded Base64 form, or ValueError."""
    return decode_verify_key_base64(ED25519, key_id, public_key)


def check_user_id(user_id: Any, where: str) -> UserID:
    if not isinstance(user_id, str):
        raise bad_json(f"{where}: user IDs must be strings")
    try:
        return UserID.parse(user_id)
    except InvalidId as e:
        raise invalid_param(f"{where}: {e}") from None


def _signatures(obj: Mapping[str, Any], what: str, *, required: bool) -> None:
    sigs = obj.get("signatures")
    if sigs is None and not required:
        return
    if not isinstance(sigs, dict) or not all(isinstance(v, dict) for v in sigs.values()):
        raise bad_json(f"'{what}.signatures' must be an object of objects")


# -- device keys -------------------------------------------------------------------------


def check_device_keys(value: Any, user_id: str, device_id: str) -> dict[str, Any]:
    """Check uploaded device keys; return them (without ``unsigned``) ready to store.

    The object must name the requester's user and device, hold string keys including
    ``ed25519:<device_id>``, and carry a valid signature by that key.
    """
    keys = canonical(value, "device_keys")
    keys.pop("unsigned", None)
    for name in ("user_id", "device_id"):
        if not isinstance(keys.get(name), str):
            raise bad_json(f"'device_keys.{name}' must be a string")
    algorithms = keys.get("algorithms")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise bad_json("'device_keys.algorithms' must be a list of strings")
    key_map = keys.get("keys")
    if not isinstance(key_map, dict) or not all(isinstance(v, str) for v in key_map.values()):
        raise bad_json("'device_keys.keys' must be an object of strings")
    _signatures(keys, "device_keys", required=True)
    if keys["user_id"] != user_id:
        raise invalid_param(f"device_keys.user_id must be {user_id}, the logged-in user")
    if keys["device_id"] != device_id:
        raise invalid_param(f"device_keys.device_id must be {device_id}, this device's ID")
    own = key_map.get(f"{ED25519}:{device_id}")
    if own is None:
        raise invalid_param(f"device_keys.keys must contain ed25519:{device_id}")
    try:
        verify_key = ed25519_key(own, device_id)
    except ValueError as e:
        raise invalid_param(f"ed25519:{device_id} is not an Ed25519 public key: {e}") from None
    try:
        verify_json(keys, user_id, verify_key)
    except SignatureError as e:
        raise invalid_param(f"device_keys must be signed by ed25519:{device_id}: {e}") from None
    return keys


def identity_keys(device_keys: Mapping[str, Any]) -> dict[str, Any]:
    """The part of device keys that identifies the device (its public keys)."""
    keys = device_keys.get("keys")
    return dict(keys) if isinstance(keys, Mapping) else {}


# -- one-time and fallback keys -----------------------------------------------------------


def check_key_map(value: Any, what: str) -> KeyMap:
    """Parse a OneTimeKeys object: ``{"<algorithm>:<key_id>": key}``.

    Signed algorithms (``signed_*``) need a KeyObject: ``key`` and ``signatures``.
    """
    if value is None:
        return {}
    keys = canonical(value, what)
    out: KeyMap = {}
    for name, key in keys.items():
        algorithm, sep, key_id = name.partition(":")
        if not sep or not algorithm or not key_id:
            raise invalid_param(f"'{what}' key names must be '<algorithm>:<key_id>', not {name!r}")
        if isinstance(key, dict):
            if not isinstance(key.get("key"), str):
                raise bad_json(f"'{what}.{name}.key' must be a string")
            _signatures(key, f"{what}.{name}", required=algorithm.startswith("signed_"))
        elif not isinstance(key, str) or algorithm.startswith("signed_"):
            raise bad_json(f"'{what}.{name}' must be a key object with 'key' and 'signatures'")
        out[(algorithm, key_id)] = key
    return out


def check_fallback_keys(value: Any) -> KeyMap:
    keys = check_key_map(value, "fallback_keys")
    algorithms = [alg for alg, _ in keys]
    if len(set(algorithms)) != len(algorithms):
        raise invalid_param("fallback_keys may hold at most one key per algorithm")
    return keys


# -- cross-signing keys --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CrossSigningKey:
    usage: str  # master, self_signing or user_signing
    public_key: str  # unpadded Base64 Ed25519 key
    json: dict[str, Any]

    @property
    def key_id(self) -> str:
        return f"{ED25519}:{self.public_key}"

    def verify_key(self) -> VerifyKey:
        return ed25519_key(self.public_key, self.public_key)


def check_cross_signing_key(value: Any, usage: str, user_id: str) -> CrossSigningKey:
    """Check an uploaded cross-signing key: the requester's, for ``usage``, one Ed25519 key."""
    what = f"{usage}_key"
    key = canonical(value, what)
    if not isinstance(key.get("user_id"), str):
        raise bad_json(f"'{what}.user_id' must be a string")
    usages = key.get("usage")
    if not isinstance(usages, list) or not all(isinstance(u, str) for u in usages):
        raise bad_json(f"'{what}.usage' must be a list of strings")
    key_map = key.get("keys")
    if not isinstance(key_map, dict) or not all(isinstance(v, str) for v in key_map.values()):
        raise bad_json(f"'{what}.keys' must be an object of strings")
    _signatures(key, what, required=False)
    if key["user_id"] != user_id:
        raise invalid_param(f"{what}.user_id must be {user_id}, the logged-in user")
    if usage not in usages:
        raise invalid_param(f"{what}.usage must contain {usage!r}")
    if len(key_map) != 1:
        raise invalid_param(f"{what}.keys must hold exactly one key")
    ((name, public),) = key_map.items()
    if name != f"{ED25519}:{public}":
        raise invalid_param(f"{what}.keys must be {{'ed25519:<public key>': '<public key>'}}")
    try:
        ed25519_key(public, public)
    except ValueError as e:
        raise invalid_param(f"{what} is not an Ed25519 public key: {e}") from None
    key.pop("unsigned", None)
    return CrossSigningKey(usage, public, key)


def check_signed_by(obj: Mapping[str, Any], user_id: str, signer: CrossSigningKey) -> None:
    """M_INVALID_SIGNATURE unless ``obj`` carries a valid signature by ``signer``."""
    try:
        verify_json(obj, user_id, signer.verify_key())
    except SignatureError as e:
        raise MatrixError(
            400, "M_INVALID_SIGNATURE", f"Not signed by the {signer.usage} key: {e}"
        ) from None


def strip_signatures(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` without ``signatures`` and ``unsigned``: what a signature covers."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
