"""What one room's timeline shows: entries built from events, with their relations.

Pure logic, no Textual. The client-server API sections it follows:

- Edits, 11.37 "Event replacements": an ``m.replace`` relation from the same sender
  and of the same type replaces the content shown with its ``m.new_content``; the most
  recent replacement wins (``origin_server_ts``, then the larger event ID); an edit of
  an edit is ignored.
- Reactions, 11.38 "Reactions": ``m.reaction`` events with an ``m.annotation``
  relation are counted per key under the event they annotate.
- Redactions, 11.2.5 / 7.9: an ``m.room.redaction`` (``redacts`` in its content from
  room version 11, at the top level before) hides its target: a message shows as
  deleted, an edit or a reaction stops counting. An event the server already serves
  redacted carries ``unsigned.redacted_because``.
- Replies, 11.19 "Rich replies": ``m.relates_to.m.in_reply_to.event_id``.
- Read receipts, 11.6: the newest ``m.read`` event of each other user.

Relations may arrive before the event they relate to (scrollback brings older pages):
they are kept by target and apply when it comes.

Local echo: a message sent from here is an entry at the bottom, ``pending`` until
/sync brings it back with ``unsigned.transaction_id``, or ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Event = Mapping[str, Any]

REDACTION = "m.room.redaction"
REACTION = "m.reaction"


def relation(event: Event) -> tuple[str, str] | None:
    """``(rel_type, target event ID)`` of an edit or a reaction, else None."""
    content = event.get("content")
    rel = content.get("m.relates_to") if isinstance(content, Mapping) else None
    if not isinstance(rel, Mapping):
        return None
    rel_type, target = rel.get("rel_type"), rel.get("event_id")
    if rel_type not in ("m.replace", "m.annotation") or not isinstance(target, str):
        return None
    if rel_type == "m.annotation" and not isinstance(rel.get("key"), str):
        return None
    return rel_type, target


def reply_to(event: Event) -> str | None:
    """The event ID ``event`` replies to, if it is a reply."""
    content = event.get("content")
    rel = content.get("m.relates_to") if isinstance(content, Mapping) else None
    reply = rel.get("m.in_reply_to") if isinstance(rel, Mapping) else None
    target = reply.get("event_id") if isinstance(reply, Mapping) else None
    return target if isinstance(target, str) else None


def redacts(event: Event) -> str | None:
    """The target of a redaction event."""
    if event.get("type") != REDACTION:
        return None
    content = event.get("content")
    target = content.get("redacts") if isinstance(content, Mapping) else None
    if not isinstance(target, str):
        target = event.get("redacts")
    return target if isinstance(target, str) else None


def transaction_id(event: Event) -> str | None:
    unsigned = event.get("unsigned")
    txn = unsigned.get("transaction_id") if isinstance(unsigned, Mapping) else None
    return txn if isinstance(txn, str) else None


def _event_id(event: Event) -> str:
    event_id = event.get("event_id")
    return event_id if isinstance(event_id, str) else ""


@dataclass(eq=False)
class Entry:
    """One shown event, with what its relations make of it."""

    event: Event
    state: str = "sent"  # "pending" or "failed" for a local echo
    txn: str | None = None
    content: Mapping[str, Any] = field(default_factory=dict)  # after the newest edit
    edited: bool = False
    redacted: bool = False
    reactions: dict[str, list[str]] = field(default_factory=dict)  # key -> senders
    readers: list[str] = field(default_factory=list)  # others whose receipt is here
    version: int = 0  # bumped on every change: the widget re-renders
    drawn: Any = None  # the widget's rendering of this version (tui/widgets/timeline.py)

    @property
    def event_id(self) -> str:
        return _event_id(self.event)

    @property
    def sender(self) -> str:
        return str(self.event.get("sender", ""))


class RoomTimeline:
    """The entries of one room, oldest first, then the local echoes."""

    def __init__(self, own_user: str = "") -> None:
        self.own_user = own_user
        self.entries: list[Entry] = []
        self.by_id: dict[str, Entry] = {}
        self.relations: dict[str, dict[str, Event]] = {}  # target -> relation ID -> event
        self.related: dict[str, str] = {}  # relation event ID -> its target
        self.redacted_ids: set[str] = set()
        self.receipts: dict[str, str] = {}  # user -> event ID read up to
        self.prev_batch: str | None = None
        self.complete = False  # the room's start was reached
        self.version = 0  # bumped when entries are added, removed or changed

    # -- events -----------------------------------------------------------------------

    def extend(self, events: Iterable[Event]) -> None:
        """Newer events, oldest first (from /sync)."""
        for event in events:
            entry = self._take(event)
            if entry is None:
                continue
            echo = self._echo(transaction_id(event))
            if echo is not None:  # the echo becomes the event, where it stands
                echo.event, echo.state = entry.event, "sent"
                self.by_id[entry.event_id] = echo
                self._update(echo)
            else:
                self.entries.insert(self._first_echo(), entry)
        self.version += 1

    def prepend(self, events: Iterable[Event]) -> int:
        """Older events, oldest first (from /messages); how many entries were added."""
        fresh = [e for e in (self._take(event) for event in events) if e is not None]
        self.entries[:0] = fresh
        self.version += 1
        return len(fresh)

    def replace_event(self, entry: Entry, event: Event) -> None:
        """``entry``'s event turned out to be ``event`` (decrypted late): shown where it
        stands, or applied to its target if it is an edit, a reaction or a redaction."""
        if relation(event) is None and redacts(event) is None:
            entry.event = event
            if entry.event_id:
                self.by_id[entry.event_id] = entry
            self._update(entry)
            return
        if entry in self.entries:
            self.entries.remove(entry)
        self.by_id.pop(entry.event_id, None)
        self.extend([event])

    def clear(self) -> None:
        """A gap (a limited /sync): start again from the events that follow."""
        self.entries = [e for e in self.entries if e.state != "sent"]
        self.by_id.clear()
        self.relations.clear()
        self.related.clear()
        self.redacted_ids.clear()
        self.prev_batch, self.complete = None, False
        self.version += 1

    def _take(self, event: Event) -> Entry | None:
        """Record ``event``; the entry to show for it, or None (a relation, a redaction,
        an event already shown)."""
        event_id = _event_id(event)
        if event_id and (event_id in self.by_id or event_id in self.related):
            return None
        target = redacts(event)
        if target is not None:
            self._redact(target)
            return None
        rel = relation(event)
        if rel is not None and (rel[0] == "m.annotation") != (event.get("type") == REACTION):
            rel = None  # a reaction is an m.reaction; an edit is not
        if rel is not None:
            if event_id and event_id not in self.redacted_ids:
                self.relations.setdefault(rel[1], {})[event_id] = event
                self.related[event_id] = rel[1]
                self._update(self.by_id.get(rel[1]))
            return None
        entry = Entry(event)
        if event_id:
            self.by_id[event_id] = entry
        self._update(entry)
        return entry

    def _redact(self, target: str) -> None:
        self.redacted_ids.add(target)
        related_to = self.related.pop(target, None)
        if related_to is not None:  # an edit or a reaction no longer counts
            self.relations.get(related_to, {}).pop(target, None)
            self._update(self.by_id.get(related_to))
        self._update(self.by_id.get(target))

    def _update(self, entry: Entry | None) -> None:
        """Recompute what ``entry`` shows from its event and relations."""
        if entry is None:
            return
        event = entry.event
        content = event.get("content")
        content = content if isinstance(content, Mapping) else {}
        unsigned = event.get("unsigned")
        entry.redacted = entry.event_id in self.redacted_ids or (
            isinstance(unsigned, Mapping) and "redacted_because" in unsigned
        )
        entry.content, entry.edited = content, False
        entry.reactions = {}
        if not entry.redacted:
            edits, reactions = [], {}
            for rel_event in self.relations.get(entry.event_id, {}).values():
                kind = relation(rel_event)
                if kind and kind[0] == "m.replace":
                    edits.append(rel_event)
                elif kind:
                    key = rel_event["content"]["m.relates_to"]["key"]
                    sender = str(rel_event.get("sender", ""))
                    senders = reactions.setdefault(key, [])
                    if sender not in senders:  # one reaction per sender and key counts
                        senders.append(sender)
            entry.reactions = reactions
            newest = _newest_edit(event, edits)
            if newest is not None:
                entry.content, entry.edited = newest, True
        entry.version += 1
        self.version += 1

    # -- local echo -------------------------------------------------------------------

    def echo(self, txn: str, event: Event) -> Entry:
        """A message being sent from here, shown at the bottom until /sync brings it."""
        entry = Entry(event, state="pending", txn=txn)
        self._update(entry)
        self.entries.append(entry)
        self.version += 1
        return entry

    def failed(self, txn: str) -> None:
        echo = self._echo(txn)
        if echo is not None:
            echo.state = "failed"
            echo.version += 1
            self.version += 1

    def _echo(self, txn: str | None) -> Entry | None:
        if txn is None:
            return None
        return next((e for e in self.entries if e.txn == txn and e.state != "sent"), None)

    def _first_echo(self) -> int:
        for i in range(len(self.entries) - 1, -1, -1):
            if self.entries[i].state == "sent":
                return i + 1
        return 0

    # -- receipts ---------------------------------------------------------------------

    def read_up_to(self, user_id: str, event_id: str) -> None:
        """``user_id``'s newest ``m.read`` receipt (others' only: one's own is implied)."""
        if user_id == self.own_user or self.receipts.get(user_id) == event_id:
            return
        before = self.receipts.get(user_id)
        self.receipts[user_id] = event_id
        for changed in (before, event_id):
            entry = self.by_id.get(changed or "")
            if entry is not None:
                entry.readers = sorted(u for u, e in self.receipts.items() if e == changed)
                entry.version += 1
        self.version += 1

    # -- questions --------------------------------------------------------------------

    def newest_event_id(self) -> str | None:
        for entry in reversed(self.entries):
            if entry.state == "sent" and entry.event_id:
                return entry.event_id
        return None

    def last_own_message(self) -> Entry | None:
        """The newest message of one's own that can be edited."""
        for entry in reversed(self.entries):
            if entry.state == "sent" and editable(entry, self.own_user):
                return entry
        return None

    def own_reaction(self, target: str, key: str) -> str | None:
        """The event ID of one's own ``key`` reaction to ``target``, if any."""
        for rel_id, event in self.relations.get(target, {}).items():
            kind = relation(event)
            if (
                kind
                and kind[0] == "m.annotation"
                and event.get("sender") == self.own_user
                and event["content"]["m.relates_to"]["key"] == key
            ):
                return rel_id
        return None


_EDITABLE = ("m.room.message",)


def editable(entry: Entry, user_id: str) -> bool:
    return (
        entry.sender == user_id
        and entry.event.get("type") in _EDITABLE
        and not entry.redacted
        and isinstance(entry.content.get("body"), str)
    )


def _newest_edit(original: Event, edits: list[Event]) -> Mapping[str, Any] | None:
    """The ``m.new_content`` of the replacement that wins, if a valid one exists."""
    valid = []
    for edit in edits:
        content = edit.get("content", {})
        new = content.get("m.new_content") if isinstance(content, Mapping) else None
        if (
            isinstance(new, Mapping)
            and edit.get("sender") == original.get("sender")
            and edit.get("type") == original.get("type")
            and "state_key" not in edit
        ):
            valid.append((_ts(edit), _event_id(edit), new))
    if not valid:
        return None
    return max(valid, key=lambda v: (v[0], v[1]))[2]


def _ts(event: Event) -> int:
    ts = event.get("origin_server_ts")
    return ts if isinstance(ts, int) else 0
