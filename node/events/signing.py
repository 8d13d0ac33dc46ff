"""Ed25519 signing keys, signed JSON, and event signatures.

Spec: content/appendices.md "Signing Details" and "Checking for a Signature" (signed
JSON); content/server-server-api.md "Signing Events" -> "Adding hashes and signatures to
outgoing events" and "Validating hashes and signatures on received events".

Keys are PyNaCl objects that carry ``alg`` and ``version`` attributes, the same shape
as the ``signedjson`` library's keys (so keys made by either work with both). Signing
and verifying are done here with PyNaCl over :func:`encode_canonical_json` (which
enforces the canonical JSON number rules); not importing ``signedjson`` keeps
``importlib.metadata`` and what it pulls in out of the running node.

The key file helpers read and write Synapse's signing key format: one key per line,
``ed25519 <version> <unpadded Base64 seed>``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import nacl.exceptions
import nacl.signing

from node.events.canonical import InvalidJson, check_canonical_values, encode_canonical_json
from node.events.hashing import decode_base64, encode_base64
from node.events.redaction import redact
from node.events.room_versions import RoomVersion
from node.ids import InvalidId, UserID

ED25519 = "ed25519"

__all__ = [
    "ED25519",
    "SignatureError",
    "SigningKey",
    "VerifyKey",
    "decode_signing_key_base64",
    "decode_verify_key_base64",
    "encode_signing_key_base64",
    "encode_verify_key_base64",
    "format_signing_keys",
    "generate_signing_key",
    "get_verify_key",
    "parse_signing_keys",
    "read_signing_key_file",
    "servers_that_must_sign",
    "sign_event",
    "sign_json",
    "verify_event_signature",
    "verify_json",
    "verify_key_id",
    "write_signing_key_file",
]


class SignatureError(Exception):
    """A signature is missing, malformed or does not verify."""


class _NamedKey(Protocol):
    alg: str
    version: str

    def encode(self) -> bytes: ...


class SigningKey(_NamedKey, Protocol):
    """An ed25519 signing key (``nacl.signing.SigningKey``) with ``alg`` and ``version``."""

    @property
    def verify_key(self) -> nacl.signing.VerifyKey: ...

    def sign(self, message: bytes) -> nacl.signing.SignedMessage: ...


class VerifyKey(_NamedKey, Protocol):
    """An ed25519 verify key (``nacl.signing.VerifyKey``) with ``alg`` and ``version``."""

    def verify(self, smessage: bytes, signature: bytes | None = None) -> bytes: ...


_K = TypeVar("_K")


def _named(key: _K, alg: str, version: str) -> _K:
    key.alg = alg  # type: ignore[attr-defined]
    key.version = version  # type: ignore[attr-defined]
    return key


# -- keys ------------------------------------------------------------------------------


def generate_signing_key(version: str) -> SigningKey:
    """A new random ed25519 signing key with key ID ``ed25519:<version>``."""
    _check_key_version(version)
    key: SigningKey = _named(nacl.signing.SigningKey.generate(), ED25519, version)
    return key


def encode_signing_key_base64(key: SigningKey) -> str:
    """The 32-byte seed of ``key`` as unpadded Base64."""
    return encode_base64(key.encode())


def decode_signing_key_base64(alg: str, version: str, key_base64: str) -> SigningKey:
    """Rebuild a signing key from its Base64 seed (decoded leniently, see VECTORS.md §7)."""
    if alg != ED25519:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    _check_key_version(version)
    seed = decode_base64(key_base64)
    if len(seed) != 32:
        raise ValueError(f"an ed25519 seed is 32 bytes, got {len(seed)}")
    key: SigningKey = _named(nacl.signing.SigningKey(seed), alg, version)
    return key


def get_verify_key(signing_key: SigningKey) -> VerifyKey:
    """The public half of ``signing_key``, with the same ``alg`` and ``version``."""
    key: VerifyKey = _named(signing_key.verify_key, signing_key.alg, signing_key.version)
    return key


def encode_verify_key_base64(key: VerifyKey) -> str:
    """The 32-byte public key as unpadded Base64 (as published in ``verify_keys``)."""
    return encode_base64(key.encode())


def decode_verify_key_base64(alg: str, version: str, key_base64: str) -> VerifyKey:
    """Rebuild a verify key from a server's published key (``verify_keys`` entry)."""
    if alg != ED25519:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    key_bytes = decode_base64(key_base64)
    if len(key_bytes) != 32:
        raise ValueError(f"an ed25519 public key is 32 bytes, got {len(key_bytes)}")
    key: VerifyKey = _named(nacl.signing.VerifyKey(key_bytes), alg, version)
    return key


def verify_key_id(key: SigningKey | VerifyKey) -> str:
    """The signing key identifier, ``<alg>:<version>``, e.g. ``ed25519:1``."""
    return f"{key.alg}:{key.version}"


def _check_key_version(version: str) -> None:
    # Key IDs appear in JSON keys and in the X-Matrix header; keep them simple.
    if not version or any(c.isspace() or c in ':",' for c in version):
        raise ValueError(f"invalid key version {version!r}")


# -- signed JSON -----------------------------------------------------------------------


def sign_json(obj: Mapping[str, Any], server_name: str, signing_key: SigningKey) -> dict[str, Any]:
    """Return a copy of ``obj`` signed by ``server_name``.

    Existing signatures are kept (ours replaces any old one with the same key ID) and
    ``unsigned`` is carried over; neither is covered by the signature. Raises
    :class:`~node.events.canonical.InvalidJson` if ``obj`` is not canonical JSON.
    """
    body = check_canonical_values({k: v for k, v in obj.items() if k != "signatures"})
    old = obj.get("signatures")
    signatures: dict[str, Any] = {}
    if isinstance(old, Mapping):
        signatures = {
            name: dict(sigs) if isinstance(sigs, Mapping) else sigs for name, sigs in old.items()
        }
    if not isinstance(signatures.get(server_name, {}), dict):
        signatures[server_name] = {}
    unsigned = body.pop("unsigned", None)
    signature = signing_key.sign(encode_canonical_json(body)).signature
    signatures.setdefault(server_name, {})[verify_key_id(signing_key)] = encode_base64(signature)
    body["signatures"] = signatures
    if unsigned is not None:
        body["unsigned"] = unsigned
    return body


def verify_json(obj: Mapping[str, Any], server_name: str, verify_key: VerifyKey) -> None:
    """Check ``server_name``'s signature with ``verify_key`` on ``obj``.

    Follows "Checking for a Signature": the entry for the entity and key ID must exist
    and decode, and must verify over the canonical JSON of ``obj`` without
    ``signatures`` and ``unsigned``. Raises :class:`SignatureError`.
    """
    key_id = verify_key_id(verify_key)
    signatures = obj.get("signatures")
    if not isinstance(signatures, Mapping):
        raise SignatureError("object has no signatures")
    by_server = signatures.get(server_name)
    if not isinstance(by_server, Mapping):
        raise SignatureError(f"not signed by {server_name}")
    sig_b64 = by_server.get(key_id)
    if not isinstance(sig_b64, str):
        raise SignatureError(f"no signature from {server_name} with key {key_id}")
    try:
        signature = decode_base64(sig_b64)
    except ValueError:
        raise SignatureError(f"signature from {server_name} {key_id} is not Base64") from None
    if len(signature) != 64:
        raise SignatureError(f"signature from {server_name} {key_id} is not 64 bytes")
    try:
        body = check_canonical_values(
            {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
        )
    except InvalidJson as e:
        raise SignatureError(f"signed object is not canonical JSON: {e}") from None
    try:
        verify_key.verify(encode_canonical_json(body), signature)
    except nacl.exceptions.BadSignatureError:
        raise SignatureError(f"bad signature from {server_name} {key_id}") from None


# -- events ----------------------------------------------------------------------------


def sign_event(
    pdu: Mapping[str, Any],
    server_name: str,
    signing_key: SigningKey,
    room_version: RoomVersion,
) -> dict[str, Any]:
    """Return a copy of ``pdu`` with ``server_name``'s signature added.

    The content hash must already be present (see ``hashing.add_content_hash``). The
    signature covers the redacted event; the resulting ``signatures`` (old ones kept)
    are copied back onto the full event.
    """
    hashes = pdu.get("hashes")
    if not isinstance(hashes, Mapping) or "sha256" not in hashes:
        raise ValueError("add the content hash (hashes.sha256) before signing an event")
    signed_redacted = sign_json(redact(pdu, room_version), server_name, signing_key)
    out = dict(pdu)
    out["signatures"] = signed_redacted["signatures"]
    return out


def verify_event_signature(
    pdu: Mapping[str, Any],
    server_name: str,
    verify_key: VerifyKey,
    room_version: RoomVersion,
) -> None:
    """Check ``server_name``'s signature on the redacted form of ``pdu``.

    Succeeds for the full event and for a redacted copy alike. Raises
    :class:`SignatureError`. The content hash is checked separately
    (``hashing.check_content_hash``).
    """
    verify_json(redact(pdu, room_version), server_name, verify_key)


def servers_that_must_sign(pdu: Mapping[str, Any]) -> set[str]:
    """The servers whose valid signatures the event must carry; check each one.

    Spec: server-server-api.md "Validating hashes and signatures on received events",
    plus auth rule 4.2 (v12: 5.2) for restricted joins.

    * Normally the ``sender``'s server.
    * An invite made from a third-party invite (``m.room.member``, ``membership: invite``,
      ``content.third_party_invite``) is the exception: "the server which actually sends
      the event may be a different server". Two servers legitimately build such events:
      the invited user's server (the server of ``third_party_invite.signed.mxid``) when
      it is in the room, and the sender's server when it issues the invite after
      ``/exchange_third_party_invite``. So if the event carries a signature block from the
      mxid's server, that server is required instead of the sender's; otherwise the
      sender's is. (``signed`` itself is checked by the auth rules.)
    * An ``m.room.member`` event with ``content.join_authorised_via_users_server`` must
      also be signed by that user's server (auth rule "If the event is not validly signed
      by the homeserver of the user ID denoted by the key, reject"; node/rooms/auth_members.py
      only checks that such a signature is present and relies on this check for validity).
      A resident server handling ``/send_join`` adds its own signature before checking.

    Everything used here survives redaction, except ``third_party_invite`` in room v10.
    Raises :class:`SignatureError` if the sender is not a valid user ID.
    """
    servers = {_server_of(pdu.get("sender"), "sender")}
    mxid_server = _third_party_invite_server(pdu)
    if mxid_server is not None and mxid_server not in servers:
        signatures = pdu.get("signatures")
        if isinstance(signatures, Mapping) and mxid_server in signatures:
            servers = {mxid_server}
    authoriser_server = _authorising_server(pdu)
    if authoriser_server is not None:
        servers.add(authoriser_server)
    return servers


def _authorising_server(pdu: Mapping[str, Any]) -> str | None:
    content = pdu.get("content")
    if pdu.get("type") != "m.room.member" or not isinstance(content, Mapping):
        return None
    authoriser = content.get("join_authorised_via_users_server")
    if not isinstance(authoriser, str):
        return None
    try:
        return UserID.parse(authoriser).domain
    except InvalidId:
        return None  # the auth rules reject it


def _third_party_invite_server(pdu: Mapping[str, Any]) -> str | None:
    content = pdu.get("content")
    if pdu.get("type") != "m.room.member" or not isinstance(content, Mapping):
        return None
    if content.get("membership") != "invite":
        return None
    tpi = content.get("third_party_invite")
    signed = tpi.get("signed") if isinstance(tpi, Mapping) else None
    mxid = signed.get("mxid") if isinstance(signed, Mapping) else None
    if not isinstance(mxid, str):
        return None
    try:
        return UserID.parse(mxid).domain
    except InvalidId:
        return None


def _server_of(user_id: object, field: str) -> str:
    if not isinstance(user_id, str):
        raise SignatureError(f"event has no {field}")
    try:
        return UserID.parse(user_id).domain
    except InvalidId as e:
        raise SignatureError(f"event {field} is not a user ID: {e}") from None


# -- key files (Synapse format) --------------------------------------------------------


def parse_signing_keys(text: str) -> list[SigningKey]:
    """Parse ``ed25519 <version> <base64 seed>`` lines; blank lines are skipped."""
    keys: list[SigningKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(f"line {number}: expected '<alg> <version> <base64 seed>'")
        try:
            keys.append(decode_signing_key_base64(*parts))
        except ValueError as e:
            raise ValueError(f"line {number}: {e}") from None
    return keys


def format_signing_keys(keys: Iterable[SigningKey]) -> str:
    """The key file text for ``keys``, one ``<alg> <version> <base64 seed>`` line each."""
    return "".join(f"{k.alg} {k.version} {encode_signing_key_base64(k)}\n" for k in keys)


def read_signing_key_file(path: str | os.PathLike[str]) -> list[SigningKey]:
    """Read a Synapse-format signing key file."""
    return parse_signing_keys(Path(path).read_text(encoding="ascii"))


def write_signing_key_file(path: str | os.PathLike[str], keys: Iterable[SigningKey]) -> None:
    """Write a signing key file readable only by its owner (mode 0600), atomically."""
    target = Path(path)
    text = format_signing_keys(keys)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
