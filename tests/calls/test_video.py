"""Half-block rendering of video frames (node/calls/video.py): synthetic frames only."""

from __future__ import annotations

import time

import av
import pytest
from rich.color import Color

from node.calls.video import HALF_BLOCK, RgbImage, fit, half_block_cells, render

RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


def image(width: int, height: int, pixel: object) -> RgbImage:
    """An image whose pixel (x, y) is ``pixel(x, y)``."""
    data = bytearray()
    for y in range(height):
        for x in range(width):
            data += bytes(pixel(x, y))  # type: ignore[operator]
    return RgbImage(width, height, bytes(data))


def red_over_blue(width: int, height: int) -> RgbImage:
    return image(width, height, lambda x, y: RED if y < height // 2 else BLUE)


def test_red_top_blue_bottom_is_one_half_block_per_cell() -> None:
    cells = half_block_cells(red_over_blue(4, 2), cols=4, rows=1)
    assert cells == [[(HALF_BLOCK, RED, BLUE)] * 4]
    (line,) = render(red_over_blue(4, 2), cols=4, rows=1)
    assert line.plain == HALF_BLOCK * 4
    (span,) = line.spans  # one run of equal colours
    assert span.style.color == Color.from_rgb(*RED)  # type: ignore[union-attr]
    assert span.style.bgcolor == Color.from_rgb(*BLUE)  # type: ignore[union-attr]


def test_a_video_frame_is_drawn_too() -> None:
    picture = red_over_blue(64, 48)
    frame = av.VideoFrame(64, 48, "rgb24")
    frame.planes[0].update(_padded(picture, frame.planes[0].line_size))
    cells = half_block_cells(frame.reformat(format="yuv420p"), cols=16, rows=6)
    assert (len(cells), len(cells[0])) == (6, 16)
    top, bottom = cells[0][8], cells[-1][8]
    assert _near(top[1], RED) and _near(top[2], RED)
    assert _near(bottom[1], BLUE) and _near(bottom[2], BLUE)


def _padded(picture: RgbImage, stride: int) -> bytes:
    rows = [
        picture.data[y * picture.stride : (y + 1) * picture.stride] for y in range(picture.height)
    ]
    return b"".join(row.ljust(stride, b"\0") for row in rows)


def _near(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return all(abs(x - y) <= 24 for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("size", "panel", "pixels"),
    [
        ((640, 480), (80, 24), (64, 48)),  # 4:3 limited by height
        ((1280, 720), (80, 24), (80, 45)),  # 16:9 limited by width
        ((480, 640), (80, 24), (36, 48)),  # portrait
        ((100, 100), (10, 10), (10, 10)),
        ((3, 1000), (80, 24), (1, 48)),  # at least one pixel wide
    ],
)
def test_scaling_keeps_the_aspect_ratio(
    size: tuple[int, int], panel: tuple[int, int], pixels: tuple[int, int]
) -> None:
    assert fit(*size, *panel) == pixels
    w, h = pixels
    cells = half_block_cells(red_over_blue(*size), *panel)
    assert len(cells) == (h + 1) // 2 and {len(line) for line in cells} == {w}
    assert len(cells) <= panel[1] and w <= panel[0]


def test_odd_pixel_height_leaves_the_last_lower_half_empty() -> None:
    # 6 x 3 pixels in a 6 x 2 panel: 3 pixel rows -> 2 cell rows, the last half empty.
    picture = image(6, 3, lambda x, y: (RED, GREEN, WHITE)[y])
    cells = half_block_cells(picture, cols=6, rows=2)
    assert [c[1:] for c in cells[0]] == [(RED, GREEN)] * 6
    assert [c[1:] for c in cells[1]] == [(WHITE, None)] * 6
    lines = render(picture, cols=6, rows=2)
    assert lines[1].spans[0].style.bgcolor is None  # type: ignore[union-attr]


def test_odd_sizes_and_nearest_neighbour_scaling() -> None:
    # Left half green, right half white; 7 x 5 source into a 3 x 1 panel.
    picture = image(7, 5, lambda x, y: GREEN if x < 3 else WHITE)
    cells = half_block_cells(picture, cols=3, rows=1)
    assert fit(7, 5, 3, 1) == (3, 2)
    assert [c[1] for c in cells[0]] == [GREEN, WHITE, WHITE]
    assert half_block_cells(picture, 0, 5) == [] and render(picture, 5, 0) == []
    with pytest.raises(ValueError):
        RgbImage(2, 2, b"\0" * 5)


def test_render_speed_at_80x24() -> None:
    """Not asserted (no timed assertions): printed for the record."""
    # Busy pixels (no two neighbours alike), the worst case for colour runs.
    raw = RgbImage(640, 480, bytes(range(256)) * 3600)
    rgb = av.VideoFrame(640, 480, "rgb24")
    rgb.planes[0].update(_padded(raw, rgb.planes[0].line_size))
    frame = rgb.reformat(format="yuv420p")
    for name, source in (("VideoFrame 640x480", frame), ("RgbImage 640x480", raw)):
        start = time.perf_counter()
        for _ in range(10):
            lines = render(source, 80, 24)
        per_frame = (time.perf_counter() - start) / 10
        print(f"\nrender {name} -> 80x24: {1000 * per_frame:.1f} ms ({1 / per_frame:.0f} fps)")
        assert len(lines) == 24
