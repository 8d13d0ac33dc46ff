"""The selected room's timeline: one line per event, oldest at the top.

At the top of the scroll (PageUp or Home there, or the mouse wheel) it posts
``Timeline.NeedOlder``; the screen fetches a page with /messages (client-server API
10.5.4, ``dir=b``) and hands it back with ``prepend``.

Local echo: a message being sent is shown at once, dim (``pending``); when /sync
brings the event back with ``unsigned.transaction_id`` (client-server API 10.4,
sent by this device) the line becomes that event; a refused send is marked ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.events import MouseScrollUp
from textual.message import Message
from textual.widgets import Static

from tui.render import NameOf, render_event


class EventLine(Static):
    def __init__(self, event: Mapping[str, Any], name_of: NameOf, classes: str = "") -> None:
        super().__init__(render_event(event, name_of), classes=f"event {classes}", markup=False)
        self.event = event

    @property
    def state(self) -> str:
        """``pending``, ``failed`` or ``sent``."""
        for state in ("pending", "failed"):
            if self.has_class(state):
                return state
        return "sent"


def transaction_id(event: Mapping[str, Any]) -> str | None:
    unsigned = event.get("unsigned")
    txn = unsigned.get("transaction_id") if isinstance(unsigned, Mapping) else None
    return txn if isinstance(txn, str) else None


class Timeline(VerticalScroll):
    BINDINGS = [  # noqa: RUF012 (Textual's class attribute)
        Binding("pageup", "older_page", "Older", show=False),
        Binding("home", "older_top", "Oldest", show=False),
    ]

    class NeedOlder(Message):
        """The user is at the top and wants older events."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.event_ids: set[str] = set()
        self.name_of: NameOf = str
        self.echoes: dict[str, EventLine] = {}  # transaction ID -> pending or failed line

    @property
    def lines(self) -> list[EventLine]:
        return list(self.query(EventLine))

    def texts(self) -> list[str]:
        """The plain text of every line, oldest first."""
        return [str(line.render()) for line in self.lines]

    def show(
        self,
        events: Iterable[Mapping[str, Any]],
        name_of: NameOf,
        echoes: Mapping[str, tuple[Mapping[str, Any], str]] | None = None,
    ) -> None:
        """Replace the content with ``events`` (another room was selected), then the
        room's ``echoes`` (transaction ID -> (event, ``pending`` or ``failed``))."""
        self.name_of = name_of
        self.event_ids.clear()
        self.echoes.clear()
        self.remove_children()
        self.append(events)
        for txn, (event, state) in (echoes or {}).items():
            self.echo(txn, event, state)

    def echo(self, txn: str, event: Mapping[str, Any], state: str = "pending") -> None:
        """Show ``event`` (no event ID yet) at the bottom, dim, until /sync brings it."""
        line = EventLine(event, self.name_of, classes="pending")
        self.echoes[txn] = line
        self.mount(line)
        if state == "failed":
            self.failed(txn)
        self.call_after_refresh(self.scroll_end, animate=False)

    def failed(self, txn: str) -> None:
        line = self.echoes.get(txn)
        if line is not None:
            line.remove_class("pending")
            line.add_class("failed")
            line.update(render_event(line.event, self.name_of).append(" ✗ not sent", "red"))

    def append(self, events: Iterable[Mapping[str, Any]]) -> None:
        at_bottom = self.scroll_y >= self.max_scroll_y
        fresh = []
        for event in events:
            txn = transaction_id(event)
            line = self.echoes.pop(txn, None) if txn else None
            if line is None:
                fresh.append(event)
                continue
            self.event_ids.add(str(event.get("event_id", "")))  # the echo becomes it
            line.event = event
            line.remove_class("pending")
            line.update(render_event(event, self.name_of))
        lines = self._new_lines(fresh)
        if lines:
            first_echo = next(iter(self.echoes.values()), None)
            self.mount_all(lines, before=first_echo)  # echoes stay at the bottom
            if at_bottom:
                self.call_after_refresh(self.scroll_end, animate=False)

    def prepend(self, events: Iterable[Mapping[str, Any]]) -> None:
        lines = self._new_lines(events)
        if not lines:
            return
        children = self.lines
        if children:
            anchor = children[0]
            self.mount_all(lines, before=anchor)
            self.call_after_refresh(self.scroll_to_widget, anchor, top=True, animate=False)
        else:
            self.mount_all(lines)

    def _new_lines(self, events: Iterable[Mapping[str, Any]]) -> list[EventLine]:
        out = []
        for event in events:
            event_id = str(event.get("event_id", ""))
            if event_id in self.event_ids:
                continue
            self.event_ids.add(event_id)
            out.append(EventLine(event, self.name_of))
        return out

    def action_older_page(self) -> None:
        if self.scroll_y <= 0:
            self.post_message(self.NeedOlder())
        else:
            self.scroll_page_up(animate=False)

    def action_older_top(self) -> None:
        if self.scroll_y <= 0:
            self.post_message(self.NeedOlder())
        else:
            self.scroll_home(animate=False)

    def on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        if self.scroll_y <= 0:
            self.post_message(self.NeedOlder())
