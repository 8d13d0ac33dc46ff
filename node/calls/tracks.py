"""A sink that reads a received media track frame by frame (aiortc ``MediaStreamTrack``),
in a task of its own, until the track ends or the sink is closed. The analyzer
(node/calls/audio.py) and the video panel's latest frame (node/calls/video.py) are
such sinks; aiortc is imported when a track is read, not with this module."""

from __future__ import annotations

import asyncio
from typing import Any

from node.tasks import cancel_and_wait


class TrackReader:
    """Subclasses take each frame in :meth:`on_frame`."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def attach(self, track: Any) -> None:
        """Start reading ``track`` (until it ends or :meth:`close`)."""
        self._task = asyncio.ensure_future(self._read(track))

    async def _read(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.on_frame(frame)

    def on_frame(self, frame: Any) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


class FanOut:
    """Hands one received track to several sinks (a recorder and the analyzer): each
    reads its own copy through aiortc's MediaRelay."""

    def __init__(self, sinks: list[Any]) -> None:
        self.sinks = sinks

    async def attach(self, track: Any) -> None:
        from aiortc.contrib.media import MediaRelay

        relay = MediaRelay()
        for sink in self.sinks:
            await sink.attach(relay.subscribe(track))

    async def close(self) -> None:
        for sink in self.sinks:
            await sink.close()
