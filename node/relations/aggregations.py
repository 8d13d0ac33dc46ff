"""Bundled aggregations (pure): what goes under ``unsigned["m.relations"]``.

Spec: content/client-server-api/_index.md "Aggregations of child events" (state
events get none; m.annotation is not aggregated, modules/event_annotations.md);
modules/threading.md "Server-side aggregation of m.thread relationships";
modules/event_replacements.md "Server-side aggregation of m.replace relationships"
(v1.7+: the most recent valid edit event itself, by origin_server_ts then the
lexicographically largest event_id; none when the original is redacted);
modules/reference_relations.md "Server-side aggregation of m.reference".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

THREAD = "m.thread"
REPLACE = "m.replace"
REFERENCE = "m.reference"
ANNOTATION = "m.annotation"

# Recursion depth of GET /relations?recurse=true (spec: "SHOULD traverse at least 3").
RECURSION_DEPTH = 3


def relates_to(content: Mapping[str, Any]) -> tuple[str, str] | None:
    """(rel_type, parent event ID) of an event's cleartext ``m.relates_to``."""
    rel = content.get("m.relates_to")
    if not isinstance(rel, Mapping):
        return None
    rel_type, parent = rel.get("rel_type"), rel.get("event_id")
    if isinstance(rel_type, str) and isinstance(parent, str):
        return rel_type, parent
    return None


def is_redacted(pdu: Mapping[str, Any]) -> bool:
    unsigned = pdu.get("unsigned")
    return isinstance(unsigned, Mapping) and "redacted_because" in unsigned


def can_be_replaced(original: Mapping[str, Any]) -> bool:
    """The original's side of "Validity of replacement events": not a state event, not
    itself an edit, and (for the aggregation) not redacted."""
    if "state_key" in original or is_redacted(original):
        return False
    content = original.get("content")
    rel = relates_to(content) if isinstance(content, Mapping) else None
    return rel is None or rel[0] != REPLACE


def is_valid_replacement(original: Mapping[str, Any], edit: Mapping[str, Any]) -> bool:
    """Every rule of "Validity of replacement events" (an encrypted edit's
    m.new_content is in its ciphertext, so the server cannot check that one)."""
    if not can_be_replaced(original) or "state_key" in edit:
        return False
    for name in ("room_id", "sender", "type"):
        if original.get(name) != edit.get(name):
            return False
    content = edit.get("content")
    if not isinstance(content, Mapping):
        return False
    rel = relates_to(content)
    if rel is None or rel[0] != REPLACE:
        return False
    return edit.get("type") == "m.room.encrypted" or isinstance(content.get("m.new_content"), dict)


def most_recent_edit(edits: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The edit that wins: largest origin_server_ts, then largest event_id."""
    if not edits:
        return None
    return max(edits, key=lambda e: (int(e.get("origin_server_ts", 0)), str(e.get("event_id"))))


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """What the server knows of a thread: how many replies (not counting ignored
    users'), the latest one, and whether the requesting user wrote any of them."""

    count: int
    latest_event_id: str
    user_replied: bool


def thread_aggregation(
    summary: ThreadSummary, latest_event: dict[str, Any], *, root_sender: str, user_id: str
) -> dict[str, Any]:
    return {
        "latest_event": latest_event,
        "count": summary.count,
        "current_user_participated": summary.user_replied or root_sender == user_id,
    }


def reference_aggregation(child_ids: Sequence[str]) -> dict[str, Any]:
    return {"chunk": [{"event_id": eid} for eid in child_ids]}


def bundled_relations(
    *,
    thread: dict[str, Any] | None = None,
    replace: dict[str, Any] | None = None,
    references: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``m.relations`` object; empty when the event has nothing to aggregate."""
    out: dict[str, Any] = {}
    if thread is not None:
        out[THREAD] = thread
    if replace is not None:
        out[REPLACE] = replace
    if references:
        out[REFERENCE] = reference_aggregation(references)
    return out
