"""Content hashes, reference hashes and event IDs, plus unpadded Base64.

Spec: content/server-server-api.md "Signing Events" -> "Calculating the content hash for
an event" and "Calculating the reference hash for an event"; event ID format in
content/rooms/fragments/v4-event-ids.md (room versions 4 and later); v12 room IDs in
content/rooms/v12.md and content/appendices.md "Room IDs"; Base64 in
content/appendices.md "Unpadded Base64" and "URL-safe unpadded Base64".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from node.events.canonical import encode_canonical_json
from node.events.redaction import redact
from node.events.room_versions import RoomVersion

# Either alphabet (standard or URL-safe), optional `=` padding.
_BASE64_RE = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def encode_base64(data: bytes, *, urlsafe: bool = False) -> str:
    """Unpadded Base64 (standard alphabet, or URL-safe with ``-`` and ``_``)."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(data).decode("ascii").rstrip("=")


def decode_base64(text: str) -> bytes:
    """Decode standard or URL-safe Base64, with or without padding (spec: SHOULD accept both).

    Non-zero trailing bits in the last character are accepted (VECTORS.md section 7: the
    spec's own seed string has them). Raises ValueError for any other malformed input.
    """
    if not isinstance(text, str) or not _BASE64_RE.fullmatch(text):
        raise ValueError("not Base64")
    unpadded = text.rstrip("=")
    if len(unpadded) % 4 == 1 or (text != unpadded and len(text) % 4 != 0):
        raise ValueError("not Base64: wrong length or padding")
    padded = unpadded + "=" * (-len(unpadded) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except binascii.Error as e:  # pragma: no cover - the checks above catch these
        raise ValueError(f"not Base64: {e}") from None


# -- content hash -----------------------------------------------------------------------


def compute_content_hash(pdu: Mapping[str, Any]) -> bytes:
    """SHA-256 over the canonical JSON of the event without unsigned, signatures, hashes."""
    stripped = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
    return hashlib.sha256(encode_canonical_json(stripped)).digest()


def add_content_hash(pdu: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``pdu`` with ``hashes.sha256`` set (other hash entries are kept)."""
    out = dict(pdu)
    old = pdu.get("hashes")
    hashes = dict(old) if isinstance(old, Mapping) else {}
    hashes["sha256"] = encode_base64(compute_content_hash(pdu))
    out["hashes"] = hashes
    return out


def check_content_hash(pdu: Mapping[str, Any]) -> bool:
    """True if ``hashes.sha256`` is present and matches the event.

    False means the event was redacted (or tampered with): the spec says to keep the
    redacted copy instead of the event as received.
    """
    hashes = pdu.get("hashes")
    if not isinstance(hashes, Mapping):
        return False
    claimed = hashes.get("sha256")
    if not isinstance(claimed, str):
        return False
    try:
        expected = decode_base64(claimed)
    except ValueError:
        return False
    return expected == compute_content_hash(pdu)


# -- reference hash and event IDs -------------------------------------------------------


def compute_reference_hash(pdu: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """SHA-256 over the canonical JSON of the redacted event without signatures, unsigned.

    Follows the spec literally: any ``event_id`` key in ``pdu`` survives redaction and is
    hashed, so pass PDUs as they travel (room v3+ PDUs carry no ``event_id``).
    """
    redacted = redact(pdu, room_version)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)
    return hashlib.sha256(encode_canonical_json(redacted)).digest()


def compute_event_id(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """``$`` + URL-safe unpadded Base64 of the reference hash (room versions 4 and later)."""
    return "$" + encode_base64(compute_reference_hash(pdu, room_version), urlsafe=True)


def room_id_from_create_event_id(event_id: str) -> str:
    """The v12 room ID for a create event: its event ID with ``!`` in place of ``$``."""
    if not event_id.startswith("$") or len(event_id) < 2 or ":" in event_id:
        raise ValueError(f"not a room v4+ event ID: {event_id!r}")
    return "!" + event_id[1:]
