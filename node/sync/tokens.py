"""Stream tokens: one position per stream, so /sync can say "everything after this".

A token is ``s`` followed by the positions joined with ``_`` in the order of
``STREAMS`` (``s42_3_0_7_0_0_0``). Tokens from an older Croft with fewer streams
parse with the missing positions at 0. Spec: client-server-api "Syncing" (``since``,
``next_batch``) leaves the format to the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# The streams of changes a client syncs. Each area owns the counter of its stream.
STREAMS = (
    "events",  # room events: events.stream_ordering
    "account_data",  # global and per-room account data, tags
    "to_device",  # send-to-device messages
    "device_lists",  # device list changes (E2EE)
    "receipts",  # read receipts
    "typing",  # typing notifications (in memory)
    "presence",  # presence updates
)


class InvalidToken(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class StreamToken:
    positions: tuple[int, ...]

    @classmethod
    def zero(cls) -> StreamToken:
        return cls((0,) * len(STREAMS))

    @classmethod
    def from_mapping(cls, positions: Mapping[str, int]) -> StreamToken:
        return cls(tuple(int(positions.get(name, 0)) for name in STREAMS))

    @classmethod
    def parse(cls, text: str) -> StreamToken:
        if not text.startswith("s") or len(text) > 200:
            raise InvalidToken(f"not a sync token: {text[:40]!r}")
        parts = text[1:].split("_")
        if len(parts) > len(STREAMS) or not all(p.isdigit() and len(p) <= 18 for p in parts):
            raise InvalidToken(f"not a sync token: {text[:40]!r}")
        values = [int(p) for p in parts] + [0] * (len(STREAMS) - len(parts))
        return cls(tuple(values))

    def __str__(self) -> str:
        return "s" + "_".join(str(p) for p in self.positions)

    def get(self, stream: str) -> int:
        return self.positions[STREAMS.index(stream)]

    def with_position(self, stream: str, position: int) -> StreamToken:
        i = STREAMS.index(stream)
        return StreamToken((*self.positions[:i], position, *self.positions[i + 1 :]))

    def is_after(self, other: StreamToken) -> bool:
        """True if any stream has moved past ``other``."""
        return any(a > b for a, b in zip(self.positions, other.positions, strict=True))

    def changed_streams(self, since: StreamToken) -> set[str]:
        return {
            name
            for name, a, b in zip(STREAMS, self.positions, since.positions, strict=True)
            if a > b
        }
