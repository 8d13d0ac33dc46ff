"""Check 1 on receipt of a PDU: "Is a valid event, otherwise it is dropped".

Spec: content/server-server-api.md "Checks performed on receipt of a PDU" and "Size
limits"; api/server-server/definitions/pdu_v4.yaml (the format of room versions 4 to
11) and the v12 changes (content/rooms/v12.md: no ``room_id`` on the create event).
A PDU that passes is wrapped as an :class:`Event` whose ID is computed from its
reference hash; the ``unsigned`` section a sender may attach is not kept (it is not
covered by the signatures and this server builds its own).
"""

from __future__ import annotations

from typing import Any

from node.events.canonical import InvalidJson, encode_canonical_json
from node.events.pdu import CREATE, Event
from node.events.room_versions import RoomVersion
from node.rooms.auth_common import is_valid_user_id

MAX_PDU_BYTES = 65536
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10
MAX_ID_BYTES = 255
MAX_SAFE_INT = 2**53 - 1
MAX_DEPTH = 2**63 - 1


class PduFormatError(ValueError):
    """The PDU is not a valid event of its room version."""


def parse_pdu(raw: Any, version: RoomVersion) -> Event:
    if not isinstance(raw, dict):
        raise PduFormatError("a PDU must be a JSON object")
    pdu = {k: v for k, v in raw.items() if k not in ("unsigned", "event_id")}
    _check_values(pdu, "")
    try:
        size = len(encode_canonical_json(pdu))
    except (InvalidJson, ValueError, TypeError) as e:
        raise PduFormatError(f"not canonical JSON: {e}") from None
    if size > MAX_PDU_BYTES:
        raise PduFormatError(f"larger than {MAX_PDU_BYTES} bytes")

    event_type = _string(pdu, "type")
    sender = _string(pdu, "sender")
    if not is_valid_user_id(sender):
        raise PduFormatError(f"sender {sender!r} is not a user ID")
    v12_create = version.room_id_is_create_event_id and event_type == CREATE
    if v12_create:
        if "room_id" in pdu:
            raise PduFormatError("a v12 create event has no room_id")
    else:
        room_id = _string(pdu, "room_id")
        if not room_id.startswith("!"):
            raise PduFormatError("room_id must start with '!'")
    if "state_key" in pdu and not isinstance(pdu["state_key"], str):
        raise PduFormatError("state_key must be a string")
    if not isinstance(pdu.get("content"), dict):
        raise PduFormatError("content must be an object")
    ts = pdu.get("origin_server_ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise PduFormatError("origin_server_ts must be an integer")
    depth = pdu.get("depth")
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_DEPTH:
        raise PduFormatError("depth must be a non-negative integer")
    _id_list(pdu, "prev_events", MAX_PREV_EVENTS)
    _id_list(pdu, "auth_events", MAX_AUTH_EVENTS)
    hashes = pdu.get("hashes")
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        raise PduFormatError("hashes.sha256 must be a string")
    signatures = pdu.get("signatures")
    if not isinstance(signatures, dict) or not all(
        isinstance(v, dict) and all(isinstance(s, str) for s in v.values())
        for v in signatures.values()
    ):
        raise PduFormatError("signatures must map servers to key IDs to signatures")
    if "redacts" in pdu and not isinstance(pdu["redacts"], str):
        raise PduFormatError("redacts must be an event ID")
    try:
        return Event.from_pdu(pdu, version)
    except (KeyError, TypeError, ValueError) as e:
        raise PduFormatError(f"cannot compute the event ID: {e}") from None


def _string(pdu: dict[str, Any], key: str) -> str:
    value = pdu.get(key)
    if not isinstance(value, str) or not value:
        raise PduFormatError(f"{key} must be a non-empty string")
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise PduFormatError(f"{key} is longer than {MAX_ID_BYTES} bytes")
    return value


def _id_list(pdu: dict[str, Any], key: str, limit: int) -> None:
    value = pdu.get(key)
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v.startswith("$") for v in value
    ):
        raise PduFormatError(f"{key} must be a list of event IDs")
    if len(value) > limit:
        raise PduFormatError(f"more than {limit} {key}")


def _check_values(value: Any, where: str, depth: int = 0) -> None:
    """Canonical JSON values only: no floats, integers within ±(2**53 - 1)."""
    if depth > 100:
        raise PduFormatError("nested too deeply")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise PduFormatError(f"non-string key at {where or 'top level'}")
            _check_values(v, f"{where}.{k}" if where else k, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_values(v, f"{where}[{i}]", depth + 1)
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise PduFormatError(f"integer out of range at {where}")
    else:
        raise PduFormatError(f"{type(value).__name__} at {where} is not canonical JSON")
