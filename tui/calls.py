"""Calls in the TUI: the call controller (node/calls/controller.py) on matrix-nio.

Client-server API, "Voice over IP" module (modules/voip_events.md): the m.call.* events
go out with ``PUT /rooms/{roomId}/send/{eventType}/{txnId}`` (nio ``room_send``) and
come in with the /sync the chat screen already runs (:meth:`TuiCalls.feed`). ICE
servers come only from ``GET /_matrix/client/v3/voip/turnServer`` (13.3): none there
means host candidates only, never a public STUN server.

Audio goes through the system's sound devices (node.calls.audio.system_audio) where
there are any; where there are none the call still carries the peer's audio and video
to this side, and the user is told so in one line. Received video is kept by a
:class:`~node.calls.video.LatestFrame` per call for the call screen to draw.

aiortc is imported when a call's media is made, not with this module.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nio

from node.calls.controller import DEFAULT_LIFETIME_MS, Call, CallChange, CallController, CallError
from node.tasks import cancel_and_wait
from tui.commands import describe

if TYPE_CHECKING:
    from node.calls.media import MediaSession
    from node.calls.video import LatestFrame

log = logging.getLogger(__name__)

TURN_PATH = "/_matrix/client/v3/voip/turnServer"
CLOSE_S = 10.0
NO_SOUND = "no sound devices: the call carries no audio from here"

Observer = Callable[[CallChange], None]
Notice = Callable[[str], None]


@dataclass(frozen=True)
class CallOptions:
    """``host_addresses``: the only local addresses ICE may gather (None: all of them);
    ``lifetime_ms``: how long an invite rings."""

    host_addresses: tuple[str, ...] | None = None
    lifetime_ms: int = DEFAULT_LIFETIME_MS


class CallSendError(Exception):
    """The homeserver refused an m.call.* event."""


class TuiCalls:
    """The calls of the TUI's device: started by the chat screen, closed with the app."""

    def __init__(self, client: nio.AsyncClient, options: CallOptions | None = None) -> None:
        self.client = client
        self.options = options or CallOptions()
        self.controller: CallController | None = None
        self.turn: list[dict[str, Any]] = []  # the /voip/turnServer answer, if it has URIs
        self.muted: set[str] = set()  # call IDs muted by the user
        self.notices: list[str] = []
        self._observer: Observer = lambda change: None
        self._notice: Notice = lambda text: None
        self._queue: asyncio.Queue[tuple[str, list[dict[str, Any]]]] | None = None

    # -- life -------------------------------------------------------------------------

    def start(self, observer: Observer, notice: Notice) -> CallController:
        """Make the controller; ``observer`` hears each CallChange, ``notice`` gets
        one-line messages for the user. :meth:`run` must then run (a worker)."""
        self._observer, self._notice = observer, notice
        self._queue = asyncio.Queue()
        self.controller = CallController(
            self.client.user_id,
            self._send,
            self._media_for,
            self._observe,
            lifetime_ms=self.options.lifetime_ms,
        )
        return self.controller

    async def run(self) -> None:
        """Feed the queued room events to the controller, in order, and tick it."""
        controller, queue = self.controller, self._queue
        assert controller is not None and queue is not None, "start() first"
        await self.refresh_turn()
        ticks = asyncio.ensure_future(controller.run_ticks())
        try:
            while True:
                room_id, events = await queue.get()
                try:
                    await controller.on_room_events(room_id, events)
                except Exception:  # an odd event must not stop the calls
                    log.exception("call events of %s", room_id)
        finally:
            await cancel_and_wait(ticks)

    def feed(self, room_id: str, events: list[dict[str, Any]]) -> None:
        """The new timeline events of a joined room (from /sync), oldest first."""
        calls = [e for e in events if str(e.get("type", "")).startswith("m.call.")]
        if calls and self._queue is not None:
            self._queue.put_nowait((room_id, calls))

    async def close(self) -> None:
        """Hang up every live call and release the media."""
        controller, self.controller = self.controller, None
        if controller is not None:
            try:
                async with asyncio.timeout(CLOSE_S):  # a homeserver gone: do not hang
                    await controller.close()
            except TimeoutError:
                log.warning("calls not closed cleanly within %s s", CLOSE_S)

    # -- the user's actions -----------------------------------------------------------

    def active(self) -> Call | None:
        """The call the user is in or being rung for (the newest), if any."""
        live = self.controller.active() if self.controller else []
        return live[-1] if live else None

    async def place(self, room_id: str, invitee: str) -> Call:
        await self.refresh_turn()
        return await self._controller().place(room_id, invitee)

    async def answer(self, call_id: str) -> None:
        await self.refresh_turn()
        await self._controller().answer(call_id)

    async def reject(self, call_id: str) -> None:
        await self._controller().reject(call_id)

    async def hangup(self, call_id: str) -> None:
        await self._controller().hangup(call_id)

    def toggle_mute(self, call_id: str) -> bool:
        """Mute or unmute this side's audio; True when muted now."""
        muted = call_id not in self.muted
        self._controller().mute(call_id, muted)
        if muted:
            self.muted.add(call_id)
        else:
            self.muted.discard(call_id)
        return muted

    def _controller(self) -> CallController:
        if self.controller is None:
            raise CallError("calls are not running")
        return self.controller

    # -- what the controller is handed --------------------------------------------------

    async def refresh_turn(self) -> None:
        """The homeserver's TURN servers (``{}`` or a refusal: none)."""
        token = self.client.access_token
        try:
            response = await self.client.send(
                "GET", TURN_PATH, headers={"Authorization": f"Bearer {token}"}
            )
            async with response:
                data = await response.json(content_type=None) if response.status == 200 else {}
        except (OSError, TimeoutError, ValueError, AssertionError) as e:
            log.info("no TURN servers: %s", e)
            data = {}
        uris = data.get("uris") if isinstance(data, dict) else None
        self.turn = [data] if isinstance(uris, list) and uris else []

    async def _send(self, room_id: str, event_type: str, content: dict[str, Any]) -> None:
        response = await self.client.room_send(
            room_id, event_type, content, ignore_unverified_devices=True
        )
        if not isinstance(response, nio.RoomSendResponse):
            raise CallSendError(f"{event_type} not sent: {describe(response)}")

    def _media_for(self, call: Call) -> MediaSession:
        from node.calls.audio import system_audio
        from node.calls.media import MediaSession
        from node.calls.video import LatestFrame

        devices = system_audio()
        audio, speakers = None, None
        if devices.available:
            try:
                audio, speakers = devices.player(), devices.recorder()
            except Exception as e:  # a device that will not open: the call goes on
                audio, speakers = None, None
                self._tell_user(f"sound devices unavailable ({e}): the call carries no audio")
        else:
            self._tell_user(NO_SOUND)
        return MediaSession(
            self.turn,
            audio=audio,
            audio_sink=speakers,
            video_sink=LatestFrame(),
            host_addresses=self.options.host_addresses,
        )

    def _observe(self, change: CallChange) -> None:
        if change.kind == "ended":
            self.muted.discard(change.call.call_id)
        self._observer(change)

    def _tell_user(self, text: str) -> None:
        self.notices.append(text)
        self._notice(text)

    @staticmethod
    def video_of(call: Call) -> LatestFrame | None:
        """The received video of ``call`` (None before its media exists)."""
        sink = call.media.video_sink if call.media is not None else None
        return sink if sink is not None and hasattr(sink, "frame") else None  # type: ignore[return-value]
