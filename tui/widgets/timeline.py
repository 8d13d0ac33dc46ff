"""The selected room's timeline: its entries, oldest at the top, drawn line by line.

A line-API ``ScrollView``: only the lines on screen are drawn, each entry is rendered
once per width and version (tui/render.py ``render_entry``) and kept, so a room with
thousands of loaded events scrolls as fast as one with ten. The time an event was
sent is at the right of its first line. The entries themselves
are a ``RoomTimeline`` (tui/timeline_model.py) the screen owns per room.

At the top of the scroll (PageUp or Home there, the mouse wheel, or the cursor moving
past the first entry) it posts ``Timeline.NeedOlder``; the screen fetches a page with
/messages (client-server API 10.5.4, ``dir=b``), prepends it to the model and calls
``refresh_model``: the entry at the top of the view stays where it was.

A cursor (up/down, or a click) picks an entry to act on: reply (r), edit one's own
message (e), delete (x or Delete: a redaction), react (+), save an attachment (s).
The timeline posts ``Timeline.Act`` and the screen does it.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.events import Click, MouseScrollUp, Resize
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.render import NameOf, render_entry, render_main
from tui.timeline_model import Entry, RoomTimeline, transaction_id

__all__ = ["Timeline", "transaction_id"]

ACTIONS = ("reply", "edit", "redact", "react", "save")
TIME_WIDTH = 7  # " 14:05" or " 24 Nov" at the right of each entry's first line
TIME_STYLE = Style(dim=True)


def clock(event: Mapping[str, Any], now: float | None = None) -> str:
    """When ``event`` was sent, in local time: ``14:05`` today, else ``24 Nov``."""
    ts = event.get("origin_server_ts")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts <= 0:
        return ""
    try:
        sent = datetime.fromtimestamp(ts / 1000)
    except (OverflowError, OSError, ValueError):
        return ""
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    return sent.strftime("%H:%M") if sent.date() == today else sent.strftime("%d %b")


class Timeline(ScrollView, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Previous", show=False),
        Binding("down", "cursor(1)", "Next", show=False),
        Binding("pageup", "older_page", "Older", show=False),
        Binding("pagedown", "page_down", "Newer", show=False),
        Binding("home", "older_top", "Oldest", show=False),
        Binding("end", "newest", "Newest", show=False),
        Binding("escape", "uncursor", "Unselect", show=False),
        Binding("r", "act('reply')", "Reply"),
        Binding("e", "act('edit')", "Edit"),
        Binding("x,delete", "act('redact')", "Delete"),
        Binding("plus", "act('react')", "React"),
        Binding("s", "act('save')", "Save file"),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {"timeline--cursor", "timeline--header"}
    DEFAULT_CSS = """
    Timeline {
        scrollbar-gutter: stable;
        overflow-x: hidden;
    }
    Timeline > .timeline--cursor {
        background: $primary 25%;
    }
    Timeline > .timeline--header {
        color: $text-muted;
        text-style: italic;
    }
    """

    class NeedOlder(Message):
        """The user is at the top and wants older events."""

    class Act(Message):
        """Do ``action`` (one of ACTIONS) to ``entry``."""

        def __init__(self, action: str, entry: Entry) -> None:
            super().__init__()
            self.action = action
            self.entry = entry

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model: RoomTimeline = RoomTimeline()
        self.name_of: NameOf = str
        self.cursor: Entry | None = None
        self.fetching = False  # an older page is on its way
        self._offsets: list[int] = []  # first line of each entry (after the header)
        self._index: dict[Entry, int] = {}
        self._total = 1
        self._width = 0
        self._seen_version = -1

    # -- what tests and the screen read -----------------------------------------------

    @property
    def lines(self) -> list[Entry]:
        """The entries shown, oldest first (local echoes last)."""
        return list(self.model.entries)

    def texts(self) -> list[str]:
        """Each entry's own line(s) as plain text, oldest first (without the quote of a
        reply, reactions or receipts)."""
        return [render_main(entry, self.name_of).plain for entry in self.model.entries]

    def screen_lines(self) -> list[str]:
        """Every line of the timeline as plain text, as drawn."""
        self._layout()
        out = [self._header().plain]
        for entry in self.model.entries:
            out += [strip.text.rstrip() for strip in self._render(entry)]
        return out

    # -- content ----------------------------------------------------------------------

    def show(self, model: RoomTimeline, name_of: NameOf) -> None:
        """Show another room's ``model``, from its newest entry."""
        self.model, self.name_of, self.cursor = model, name_of, None
        self.fetching = False
        self._seen_version = -1
        self._layout()
        self.scroll_end(animate=False, immediate=True)
        self.refresh()

    def refresh_model(self) -> None:
        """The model changed (new, older or changed entries): draw it again, keeping
        the view at the bottom if it was there, else the entry at its top in place."""
        if self._seen_version == self.model.version:
            return
        if self.cursor is not None and self.cursor not in self.model.entries:
            self.cursor = None
        self._relayout()
        self.refresh()

    def _relayout(self) -> None:
        """Lay the entries out again, at the bottom if the view was there, else with the
        entry at the top of the view where it was."""
        at_bottom = self.scroll_y >= self.max_scroll_y
        anchor, delta = self._anchor()
        self._layout()
        if at_bottom:
            self.scroll_end(animate=False, immediate=True)
        elif anchor is not None and anchor in self._index:
            top = self._offsets[self._index[anchor]] + delta
            self.scroll_to(y=top, animate=False, immediate=True)

    def _anchor(self) -> tuple[Entry | None, int]:
        if not self._offsets or not self.model.entries:
            return None, 0
        y = int(self.scroll_y)
        i = max(0, bisect_right(self._offsets, y) - 1)
        entries = self.model.entries
        if i >= len(entries):
            return None, 0
        return entries[i], y - self._offsets[i]

    # -- layout and drawing -----------------------------------------------------------

    def _content_width(self) -> int:
        """The width entries are rendered at. While the widget has no size (before its
        first layout, or for a moment during one) the last width holds: rendering every
        entry again at a throwaway width would cost as much as the whole timeline."""
        width = self.scrollable_content_region.width
        if width <= 0:
            return self._width or 80
        return max(10, width)

    def _render(self, entry: Entry) -> list[Strip]:
        width = self._width or self._content_width()
        cached = entry.drawn  # (version, width, strips): kept with the entry, so coming
        if cached is not None and cached[0] == entry.version and cached[1] == width:
            return cached[2]  # back to a room does not render it all again
        text = render_entry(entry, self.model, self.name_of)
        console = self.app.console
        body = max(1, width - TIME_WIDTH)
        options = console.options.update_width(body)
        lines = console.render_lines(text, options, pad=False, new_lines=False)
        strips = [Strip(line) for line in lines] or [Strip.blank(body)]
        when = Strip([Segment(f" {clock(entry.event):>{TIME_WIDTH - 1}}", TIME_STYLE)])
        strips[0] = Strip.join([strips[0].crop_extend(0, body, None), when])
        entry.drawn = (entry.version, width, strips)
        return strips

    def _layout(self) -> None:
        width = self._content_width()
        if width != self._width:
            self._width = width
        offsets, y = [], 1  # line 0: the header
        for entry in self.model.entries:
            offsets.append(y)
            y += len(self._render(entry))
        self._offsets = offsets
        self._index = {e: i for i, e in enumerate(self.model.entries)}
        self._total = y
        self._seen_version = self.model.version
        self.virtual_size = Size(width, y)

    def on_resize(self, event: Resize) -> None:
        if self._content_width() != self._width:
            self._relayout()

    def _header(self) -> Text:
        if self.model.complete:
            return Text("— the start of the room —")
        if self.fetching:
            return Text("… loading older messages")
        return Text("↑ older messages: PageUp or Home at the top")

    def render_line(self, y: int) -> Strip:
        if self._seen_version != self.model.version:
            self._layout()
        line = int(self.scroll_y) + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if line == 0:
            header = self.get_component_rich_style("timeline--header")
            lines = self.app.console.render_lines(
                self._header(), self.app.console.options.update_width(max(1, width)), pad=False
            )
            strip = Strip(lines[0]) if lines else Strip.blank(width)
            return strip.apply_style(header).crop_extend(0, width, base)
        if line >= self._total or not self._offsets:
            return Strip.blank(width, base)
        i = bisect_right(self._offsets, line) - 1
        entry = self.model.entries[i]
        strips = self._render(entry)
        at = line - self._offsets[i]
        strip = strips[at] if at < len(strips) else Strip.blank(width)
        strip = strip.crop_extend(0, width, base)
        if entry is self.cursor:
            strip = strip.apply_style(self.get_component_rich_style("timeline--cursor"))
        return strip

    # -- cursor and actions -----------------------------------------------------------

    def _entry_region(self, entry: Entry) -> Region | None:
        i = self._index.get(entry)
        if i is None:
            return None
        height = len(self._render(entry))
        return Region(0, self._offsets[i], self._width, height)

    def set_cursor(self, entry: Entry | None) -> None:
        self.cursor = entry
        if entry is not None:
            region = self._entry_region(entry)
            if region is not None:
                self.scroll_to_region(region, animate=False, immediate=True)
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        entries = self.model.entries
        if not entries:
            return
        if self.cursor is None or self.cursor not in self._index:
            self.set_cursor(entries[-1] if delta < 0 else entries[0])
            return
        i = self._index[self.cursor] + delta
        if i < 0:
            self.scroll_home(animate=False, immediate=True)
            self.post_message(self.NeedOlder())
            return
        self.set_cursor(entries[min(i, len(entries) - 1)])

    def action_uncursor(self) -> None:
        self.set_cursor(None)

    def action_act(self, action: str) -> None:
        if self.cursor is None:
            self.notify("pick a message first: up/down or a click", severity="warning")
            return
        self.post_message(self.Act(action, self.cursor))

    def action_newest(self) -> None:
        self.cursor = None
        self.scroll_end(animate=False, immediate=True)
        self.refresh()

    def action_page_down(self) -> None:
        self.scroll_page_down(animate=False)

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

    def on_click(self, event: Click) -> None:
        line = int(self.scroll_y) + event.y
        if line == 0:
            self.post_message(self.NeedOlder())
            return
        if not self._offsets or line >= self._total:
            return
        self.set_cursor(self.model.entries[bisect_right(self._offsets, line) - 1])
