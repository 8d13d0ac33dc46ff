"""Calls on screen: the incoming-call dialog and the in-call screen (tui/calls.py does
the work; client-server API "Voice over IP", modules/voip_events.md).

- :class:`IncomingCallScreen`: who calls, from which room; a or Enter answers
  (m.call.answer), r or Escape rejects (m.call.reject). It closes itself when the call
  stops ringing (the caller hung up, or the invite's lifetime ran out).
- :class:`CallScreen`: the peer, the state, the duration ticking, muted or not, and the
  remote video drawn with half-block characters (node/calls/video.py) about ten times a
  second; m mutes or unmutes, h hangs up (m.call.hangup), Escape goes back to the chat
  while the call goes on (ctrl+k comes back).

:func:`call_changed` and :func:`call_pressed` are what the chat screen calls.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from node.calls.controller import Call, CallChange
from node.calls.video import render
from tui.calls import TuiCalls
from tui.commands import CommandError, call_peer

if TYPE_CHECKING:
    from tui.screens.chat import ChatScreen

FPS = 10
STATES = {
    "ringing": "ringing",
    "calling": "calling…",
    "connecting": "connecting…",
    "connected": "connected",
    "ended": "ended",
}
ENDED = {
    "user_hangup": "hung up",
    "rejected": "rejected",
    "invite_timeout": "no answer",
    "ice_failed": "the media could not connect",
    "answered_elsewhere": "answered on another device",
}


def duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return (f"{hours}:" if hours else "") + f"{rest // 60:02d}:{rest % 60:02d}"


class IncomingCallScreen(ModalScreen[bool | None]):
    """Dismisses with True (answer), False (reject) or None (it stopped ringing)."""

    BINDINGS = [  # noqa: RUF012
        Binding("a,enter", "answer(True)", "Answer"),
        Binding("r,escape", "answer(False)", "Reject"),
    ]

    def __init__(self, call: Call, caller: str, room_name: str) -> None:
        super().__init__()
        self.call = call
        self.caller = caller
        self.room_name = room_name

    def compose(self) -> ComposeResult:
        with Vertical(id="incoming-call", classes="dialog"):
            yield Static(f"📞 {self.caller} is calling", id="incoming-caller", markup=False)
            yield Static(f"in {self.room_name}", id="incoming-room", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Answer (a)", id="answer", variant="success")
                yield Button("Reject (r)", id="reject", variant="error")

    def on_mount(self) -> None:
        self.set_interval(0.25, self.check)

    def check(self) -> None:
        if self.call.state != "ringing" and self.is_current:
            self.dismiss(None)

    @on(Button.Pressed)
    def on_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "answer")

    def action_answer(self, accept: bool) -> None:
        self.dismiss(accept)


class CallScreen(ModalScreen[None]):
    BINDINGS = [  # noqa: RUF012
        Binding("m", "mute", "Mute / unmute"),
        Binding("h", "hangup", "Hang up"),
        Binding("escape", "back", "Back to the chat"),
    ]

    def __init__(self, calls: TuiCalls, call: Call, peer: str, room_name: str) -> None:
        super().__init__()
        self.calls = calls
        self.call = call
        self.peer = peer
        self.room_name = room_name
        self.drawn = -1  # the count of the frame drawn
        self.drawn_size = (0, 0)  # and the panel's size then
        self.video_lines: list[Text] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="call"):
            yield Static(f"📞 {self.peer} · {self.room_name}", id="call-peer", markup=False)
            yield Static("", id="call-status", markup=False)
            yield Static("", id="call-video")
            yield Static("m mute · h hang up · Esc back to the chat", id="call-keys")

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(1 / FPS, self.redraw)

    def status(self) -> str:
        call = self.call
        parts = [STATES.get(call.state, call.state)]
        if call.state == "connected":
            parts.append(duration(call.duration_s))
        if call.call_id in self.calls.muted:
            parts.append("muted")
        return " · ".join(parts)

    def redraw(self) -> None:
        if self.call.state == "ended":
            if self.is_current:
                self.dismiss(None)
            return
        self.query_one("#call-status", Static).update(self.status())
        sink = self.calls.video_of(self.call)
        panel = self.query_one("#call-video", Static)
        size = (panel.content_size.width, panel.content_size.height)
        if sink is None or sink.frame is None or min(size) <= 0:
            return
        if (sink.frames, size) == (self.drawn, self.drawn_size):
            return
        try:
            self.video_lines = render(sink.frame, *size)
        except ValueError:  # an odd frame: keep the last picture
            return
        self.drawn, self.drawn_size = sink.frames, size
        panel.update(Text("\n", justify="center").join(self.video_lines))

    def action_mute(self) -> None:
        try:
            muted = self.calls.toggle_mute(self.call.call_id)
        except Exception as e:  # the call ended meanwhile
            self.notify(f"cannot mute: {e}", severity="warning")
            return
        self.query_one("#call-status", Static).update(self.status())
        self.notify("muted: the other side hears silence" if muted else "unmuted")

    def action_hangup(self) -> None:
        self.run_worker(guarded(self, self.calls.hangup(self.call.call_id), "hang up"))

    def action_back(self) -> None:
        self.dismiss(None)


async def guarded(screen: Any, action: Awaitable[Any], what: str) -> None:
    """Await ``action``; a failure becomes one line for the user, never a crash."""
    try:
        await action
    except Exception as e:
        say = getattr(screen, "say", None) or screen.notify
        say(f"cannot {what}: {e}", severity="error")


# -- what the chat screen calls --------------------------------------------------------


def _names(chat: ChatScreen, call: Call) -> tuple[str, str]:
    room = chat.client.rooms.get(call.room_id)
    peer = chat.name_of(call.room_id)(call.peer) if call.peer else "someone"
    return peer, room.display_name if room else call.room_id


def show_call(chat: ChatScreen, call: Call) -> None:
    """The call screen of ``call``, unless it is shown already."""
    if any(isinstance(s, CallScreen) and s.call is call for s in chat.app.screen_stack):
        return
    peer, room_name = _names(chat, call)
    chat.app.push_screen(CallScreen(chat.calls, call, peer, room_name))


def call_pressed(chat: ChatScreen) -> None:
    """ctrl+k, /call or the call button: back to the live call, else call the room."""
    live = chat.calls.active()
    if live is not None and live.state != "ringing":
        show_call(chat, live)
        return
    try:
        peer = call_peer(chat.client, chat.selected)
    except CommandError as e:
        chat.say(str(e), severity="error")
        return
    room_id = chat.selected or ""
    chat.run_worker(guarded(chat, chat.calls.place(room_id, peer), "call"), group="call")


def call_changed(chat: ChatScreen, change: CallChange) -> None:
    """What the user sees of each change of a call."""
    call = change.call
    peer, room_name = _names(chat, call)
    if change.kind == "ringing":

        def answered(accept: bool | None) -> None:
            if accept:
                chat.run_worker(answer(chat, call), group="call")
            elif accept is False:
                chat.run_worker(guarded(chat, chat.calls.reject(call.call_id), "reject"))

        chat.app.push_screen(IncomingCallScreen(call, peer, room_name), answered)
    elif change.kind == "calling":
        chat.say(f"calling {peer}…")
        show_call(chat, call)
    elif change.kind == "connected":
        chat.say(f"call connected with {peer}")
    elif change.kind == "ended":
        reason = call.ended_reason or change.detail
        chat.say(f"call with {peer} ended: {ENDED.get(reason, reason)}")
    elif change.kind == "problem":
        chat.say(f"call with {peer}: {change.detail}", severity="warning")


async def answer(chat: ChatScreen, call: Call) -> None:
    try:
        await chat.calls.answer(call.call_id)
    except Exception as e:
        chat.say(f"cannot answer: {e}", severity="error")
        return
    show_call(chat, call)
