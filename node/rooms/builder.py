"""Building this server's own events: fields, content hash, signature, event ID.

Spec: content/server-server-api.md "Signing Events" (hash, then sign the redacted
copy) and "Auth events selection"; PDU formats api/server-server/definitions/pdu_v*.yaml.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from node.events.canonical import check_canonical_values, encode_plain, is_plain
from node.events.hashing import encode_base64, room_id_from_create_event_id
from node.events.pdu import CREATE, Event, StateKey
from node.events.redaction import redact
from node.events.room_versions import RoomVersion
from node.federation.keys import ServerKey
from node.rooms.auth import auth_types_for_event

# Spec: "Size limits": a PDU, as canonical JSON, is at most 65536 bytes.
MAX_PDU_BYTES = 65536
# Cap on prev_events of an event we build (the spec allows up to 20).
MAX_PREV_EVENTS = 10


class EventTooLarge(ValueError):
    pass


def build_event(
    *,
    room_version: RoomVersion,
    server_key: ServerKey,
    room_id: str | None,
    sender: str,
    event_type: str,
    content: Mapping[str, Any],
    state_key: str | None,
    prev_events: Sequence[tuple[str, int]],
    state: Mapping[StateKey, Event],
    origin_server_ts: int,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Event, bytes]:
    """Build, hash and sign an event on top of ``prev_events`` ((id, depth) pairs),
    choosing its auth events from ``state`` (the state before it); ``extra`` adds
    top-level fields (``redacts`` of a redaction before room v11). Returns the event and
    its canonical JSON (what the store writes). Each form is encoded once: the event for
    its content hash, the redacted event for the signature and the reference hash (the
    same bytes: neither covers ``signatures`` or ``unsigned``), the signed event for the
    size check and storage."""
    if not is_plain(content):
        content = check_canonical_values(content)  # raises InvalidJson
    if extra and not is_plain(dict(extra)):
        extra = check_canonical_values(dict(extra))
    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": sender,
        "content": dict(content),
        "origin_server_ts": origin_server_ts,
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    for key, value in (extra or {}).items():
        if key in pdu or key in ("prev_events", "auth_events", "depth", "hashes", "signatures"):
            raise ValueError(f"extra field {key!r} would overwrite a built field")
        pdu[key] = value
    is_v12_create = room_version.room_id_is_create_event_id and event_type == CREATE
    if not is_v12_create:
        if room_id is None:
            raise ValueError("room_id is required except on a v12 create event")
        pdu["room_id"] = room_id
    if not room_version.implicit_room_creator:
        pdu["origin"] = server_key.server_name  # dropped from the PDU format in v11
    prev = list(prev_events)[:MAX_PREV_EVENTS]
    pdu["prev_events"] = [eid for eid, _ in prev]
    pdu["depth"] = min(max((d for _, d in prev), default=0) + 1, 2**53 - 1)
    pdu["auth_events"] = sorted(
        state[key].event_id for key in auth_types_for_event(room_version, pdu) if key in state
    )
    # Every value is plain canonical JSON now (the content checked, the rest built
    # here), so the encoder alone suffices; it still refuses a lone surrogate.
    pdu["hashes"] = {"sha256": encode_base64(hashlib.sha256(encode_plain(pdu)).digest())}
    signed = encode_plain(redact(pdu, room_version))
    signature = server_key.signing_key.sign(signed).signature
    pdu["signatures"] = {server_key.server_name: {server_key.key_id: encode_base64(signature)}}
    encoded = encode_plain(pdu)
    if len(encoded) > MAX_PDU_BYTES:
        raise EventTooLarge(f"event is larger than {MAX_PDU_BYTES} bytes")
    event_id = "$" + encode_base64(hashlib.sha256(signed).digest(), urlsafe=True)
    return Event(event_id, room_version, pdu), encoded


def room_id_for_create(create: Event) -> str:
    """The room ID a create event founds: derived (v12) or the one it carries."""
    if create.room_version.room_id_is_create_event_id:
        return room_id_from_create_event_id(create.event_id)
    return create.room_id
