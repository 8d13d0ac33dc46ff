"""The redaction algorithm: strip an event down to the keys the protocol needs.

Spec: content/rooms/fragments/v9-redactions.md (room versions 9 and 10) and
content/rooms/fragments/v11-redactions.md (room versions 11 and 12); client-facing
description in content/client-server-api/_index.md "Redactions".

Redaction runs when a redaction is applied, and also inside hashing and signing: the
event signature and the reference hash (hence the event ID) cover the redacted form.
:func:`redact` works on PDUs and on client-format events alike: both are JSON objects,
and the algorithm only looks at top-level keys and ``content``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from node.events.canonical import json_copy
from node.events.room_versions import RedactionAlgorithm, RoomVersion

# Top-level keys that survive redaction; every other key (including `unsigned`) goes.
_TOP_LEVEL_V9 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# v11 no longer keeps `origin`, `membership` and `prev_state`.
_TOP_LEVEL_V11 = _TOP_LEVEL_V9 - {"origin", "membership", "prev_state"}

_POWER_LEVELS_V9 = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)

# Content keys kept per event type; any type not listed keeps an empty content.
_CONTENT_V9: dict[str, tuple[str, ...]] = {
    "m.room.member": ("membership", "join_authorised_via_users_server"),
    "m.room.create": ("creator",),
    "m.room.join_rules": ("join_rule", "allow"),
    "m.room.power_levels": _POWER_LEVELS_V9,
    "m.room.history_visibility": ("history_visibility",),
}
# m.room.create keeps everything in v11 (handled in code); member also keeps
# third_party_invite.signed (handled in code).
_CONTENT_V11: dict[str, tuple[str, ...]] = {
    "m.room.member": ("membership", "join_authorised_via_users_server"),
    "m.room.join_rules": ("join_rule", "allow"),
    "m.room.power_levels": (*_POWER_LEVELS_V9, "invite"),
    "m.room.history_visibility": ("history_visibility",),
    "m.room.redaction": ("redacts",),
}

# `unsigned` keys kept when serving a redacted event to a client: they describe the
# delivery, not the redacted content.
_CLIENT_UNSIGNED_KEPT = ("age", "transaction_id", "membership")


def redact(event: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """Return the redacted copy of ``event`` under ``room_version``'s algorithm.

    The input is not modified and the result shares no mutable objects with it.
    If ``content`` is present but not an object, it becomes ``{}``.
    """
    v11 = room_version.redaction is RedactionAlgorithm.V11
    top_level = _TOP_LEVEL_V11 if v11 else _TOP_LEVEL_V9
    redacted = {k: json_copy(v) for k, v in event.items() if k in top_level and k != "content"}
    if "content" in event and "content" in top_level:
        content = event["content"]
        if not isinstance(content, Mapping):
            content = {}
        event_type: Any = event.get("type")
        if v11:
            kept = _redact_content_v11(event_type, content)
        else:
            kept = _keep(content, _CONTENT_V9.get(event_type, ()))
        redacted["content"] = json_copy(kept)
    return redacted


def _keep(content: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: content[k] for k in keys if k in content}


def _redact_content_v11(event_type: Any, content: Mapping[str, Any]) -> dict[str, Any]:
    # 1. m.room.create allows all keys.
    if event_type == "m.room.create":
        return dict(content)
    kept = _keep(content, _CONTENT_V11.get(event_type, ()))
    # 2. m.room.member also allows the `signed` key of `third_party_invite`.
    if event_type == "m.room.member":
        tpi = content.get("third_party_invite")
        if isinstance(tpi, Mapping) and "signed" in tpi:
            kept["third_party_invite"] = {"signed": tpi["signed"]}
    return kept


def redact_for_client(
    event: Mapping[str, Any],
    room_version: RoomVersion,
    redacted_because: Mapping[str, Any],
) -> dict[str, Any]:
    """Redact a client-format event and record why, as the client-server API expects.

    The redaction algorithm removes ``unsigned``; clients are sent
    ``unsigned.redacted_because`` (the redaction event, in client format) instead, plus
    the delivery keys ``age``, ``transaction_id`` and ``membership`` if they were there.
    For a redacted v11+ ``m.room.redaction`` event, ``content.redacts`` is also copied to
    the top level for older clients (content/rooms/v11.md, "Moving the redacts property").
    """
    redacted = redact(event, room_version)
    unsigned: dict[str, Any] = {}
    old_unsigned = event.get("unsigned")
    if isinstance(old_unsigned, Mapping):
        unsigned = {
            k: json_copy(old_unsigned[k]) for k in _CLIENT_UNSIGNED_KEPT if k in old_unsigned
        }
    unsigned["redacted_because"] = json_copy(dict(redacted_because))
    redacted["unsigned"] = unsigned
    if room_version.redacts_in_content and redacted.get("type") == "m.room.redaction":
        redacts = redacted.get("content", {}).get("redacts")
        if isinstance(redacts, str):
            redacted["redacts"] = redacts
    return redacted
