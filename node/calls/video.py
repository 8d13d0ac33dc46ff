"""Remote video drawn in the terminal with half-block characters.

Client-server API, "Voice over IP" module: a call's video is a second m-line of the SDP;
this module only draws what arrives. Each terminal cell shows two pixels stacked: the
character "▀" (upper half block) painted with the upper pixel as foreground colour and
the lower pixel as background colour, so a cols x rows panel shows cols x 2*rows pixels
(terminal cells are about twice as tall as wide, so those pixels are roughly square).

:func:`half_block_cells` is pure (frame in, rows of (character, foreground, background)
out); :func:`render` wraps it as Rich ``Text`` lines for a panel. :class:`LatestFrame` is
a sink that keeps the newest received frame for a UI that draws at its own pace. No
Textual here: the TUI builds its widget on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Any

from rich.color import Color
from rich.style import Style
from rich.text import Text

from node.calls.tracks import TrackReader

HALF_BLOCK = "▀"

RGB = tuple[int, int, int]
Cell = tuple[str, RGB, RGB | None]  # character, foreground, background (None: no pixel)


@dataclass(frozen=True)
class RgbImage:
    """Packed 24-bit RGB pixels, row after row (``stride`` bytes per row)."""

    width: int
    height: int
    data: bytes
    stride: int = 0

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"empty image {self.width}x{self.height}")
        if not self.stride:
            object.__setattr__(self, "stride", self.width * 3)
        if len(self.data) < self.stride * (self.height - 1) + self.width * 3:
            raise ValueError("pixel data shorter than width x height x 3")

    def pixel(self, x: int, y: int) -> RGB:
        i = y * self.stride + x * 3
        d = self.data
        return d[i], d[i + 1], d[i + 2]


def fit(width: int, height: int, cols: int, rows: int) -> tuple[int, int]:
    """The pixel size (w, h) of a ``width`` x ``height`` picture scaled to fit a panel of
    ``cols`` x ``rows`` cells (cols x 2*rows square pixels), aspect ratio kept, at least
    1 x 1."""
    if cols <= 0 or rows <= 0:
        return 0, 0
    scale = min(cols / width, 2 * rows / height)
    return max(1, min(cols, round(width * scale))), max(1, min(2 * rows, round(height * scale)))


def _scaled(frame: Any, width: int, height: int) -> RgbImage:
    """The frame as an RgbImage of exactly ``width`` x ``height`` pixels."""
    if isinstance(frame, RgbImage):
        if (frame.width, frame.height) == (width, height):
            return frame
        # Nearest neighbour: pixel centres of the target mapped onto the source.
        xs = [min(frame.width - 1, (2 * x + 1) * frame.width // (2 * width)) for x in range(width)]
        out = bytearray()
        for y in range(height):
            sy = min(frame.height - 1, (2 * y + 1) * frame.height // (2 * height))
            row = frame.data[sy * frame.stride : sy * frame.stride + frame.width * 3]
            for sx in xs:
                out += row[sx * 3 : sx * 3 + 3]
        return RgbImage(width, height, bytes(out))
    # A PyAV VideoFrame: FFmpeg's scaler does the resizing and the colour conversion.
    rgb = frame.reformat(width=width, height=height, format="rgb24")
    plane = rgb.planes[0]
    return RgbImage(width, height, bytes(plane), stride=plane.line_size)


def half_block_cells(frame: Any, cols: int, rows: int) -> list[list[Cell]]:
    """Rows of cells drawing ``frame`` (a PyAV ``VideoFrame`` or an :class:`RgbImage`)
    within ``cols`` x ``rows`` cells, aspect ratio kept; the picture's size decides how
    many cells are used (the caller centres it). An odd pixel height leaves the last
    row's lower half empty (background None)."""
    width, height = fit(frame.width, frame.height, cols, rows)
    if not width:
        return []
    image = _scaled(frame, width, height)
    lines: list[list[Cell]] = []
    for top in range(0, height, 2):
        line: list[Cell] = []
        for x in range(width):
            lower = image.pixel(x, top + 1) if top + 1 < height else None
            line.append((HALF_BLOCK, image.pixel(x, top), lower))
        lines.append(line)
    return lines


def render(frame: Any, cols: int, rows: int) -> list[Text]:
    """:func:`half_block_cells` as Rich ``Text`` lines (runs of equal colours share one
    span, styles are reused within the picture)."""
    styles: dict[tuple[RGB, RGB | None], Style] = {}
    lines: list[Text] = []
    for cells in half_block_cells(frame, cols, rows):
        text = Text(no_wrap=True, overflow="crop")
        for key, run in groupby((fg, bg) for _, fg, bg in cells):
            text.append(HALF_BLOCK * sum(1 for _ in run), _style(styles, key))
        lines.append(text)
    return lines


def _style(cache: dict[tuple[RGB, RGB | None], Style], key: tuple[RGB, RGB | None]) -> Style:
    style = cache.get(key)
    if style is None:
        fg, bg = key
        style = Style(
            color=Color.from_rgb(*fg), bgcolor=Color.from_rgb(*bg) if bg is not None else None
        )
        cache[key] = style
    return style


class LatestFrame(TrackReader):
    """A sink for a received video track that keeps only its newest frame."""

    def __init__(self) -> None:
        super().__init__()
        self.frame: Any = None
        self.frames = 0

    def on_frame(self, frame: Any) -> None:
        self.frame = frame
        self.frames += 1
