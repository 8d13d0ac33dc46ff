"""Thumbnails: which size to make (pure functions) and making it with Pillow.

Spec: content/client-server-api/modules/content_repo.md "Thumbnails" and
authed-content-repo.yaml (GET /_matrix/client/v1/media/thumbnail, ``animated``).

- Sizes: a request is served from the smallest of the spec's sizes (32x32 and 96x96
  crop; 320x240, 640x480 and 800x600 scale) that is at least as large, and for crop
  has the same aspect ratio; other requests are served at the size asked for. The
  result is what the cache is keyed by (:func:`serving_box`).
- "scale" keeps the aspect ratio and fits the image inside the box: one side equals
  the box, the other is at most the box ("either the width or the height is smaller
  than the requested size").
- "crop" cuts the largest centred region with the box's aspect ratio and scales it
  to the box.
- Never upscaled: content no larger than the box is served as it is ("servers should
  return the original content rather than thumbnail it"), re-encoded only when it is
  not a plain image type a client may show inline, is animated and animation was not
  asked for, or needs its EXIF rotation applied.
- ``animated=true`` on a GIF, APNG or animated WebP gives an animated WebP (the spec
  prefers ``image/webp``; GIF when Pillow lacks WebP); otherwise the first frame.

Safety: Pillow is imported only here, inside :func:`make_thumbnail`, which runs in a
worker thread; only PNG, JPEG, GIF and WebP decoders are allowed (no EPS, which would
run Ghostscript, or other rarely-audited formats); images over ``MAX_PIXELS`` (and
Pillow's own decompression-bomb check, set to the same limit) are refused before they
are decoded; JPEGs are decoded at a reduced size when the thumbnail is small.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image as PILImage

METHODS = ("crop", "scale")
SPEC_SIZES: dict[str, tuple[tuple[int, int], ...]] = {
    "crop": ((32, 32), (96, 96)),
    "scale": ((320, 240), (640, 480), (800, 600)),
}
# Decoding limits: a decompression bomb is refused with 413 M_TOO_LARGE.
MAX_PIXELS = 40_000_000
MAX_SOURCE_BYTES = 50 * 1024**2
# Animated thumbnails: beyond these the first frame is served.
MAX_FRAMES = 300
MAX_ANIMATED_SOURCE_PIXELS = 200_000_000  # width x height x frames decoded
MAX_ANIMATED_OUTPUT_PIXELS = 30_000_000  # width x height x frames kept in memory

DECODERS = ("PNG", "JPEG", "GIF", "WEBP")
FORMAT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
TYPE_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
}
JPEG_QUALITY = 80
WEBP_QUALITY = 80
# EXIF orientations that swap width and height.
_TRANSPOSED = {5, 6, 7, 8}


class CannotThumbnail(Exception):
    """Not an image this node can thumbnail, or an undecodable one."""


class TooLargeToThumbnail(Exception):
    """The image is too large to decode safely."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Cut ``region`` (left, top, right, bottom) out of the source, scale it to ``size``."""

    region: tuple[int, int, int, int]
    size: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Thumbnail:
    data: bytes
    content_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Original:
    """The source itself is the answer; served with the type its bytes really have."""

    content_type: str


# -- sizes (pure) -----------------------------------------------------------------------------


def serving_box(width: int, height: int, method: str) -> tuple[int, int]:
    """The box a request for ``width`` x ``height`` is served from."""
    for w, h in SPEC_SIZES[method]:
        if w >= width and h >= height and (method == "scale" or w * height == h * width):
            return w, h
    return width, height


def plan(src_w: int, src_h: int, box_w: int, box_h: int, method: str) -> Plan | None:
    """How to thumbnail a ``src_w`` x ``src_h`` image into the box; None: serve it as is."""
    if src_w <= box_w and src_h <= box_h:
        return None
    if method == "scale":
        f = min(box_w / src_w, box_h / src_h)
        return Plan((0, 0, src_w, src_h), (max(1, round(src_w * f)), max(1, round(src_h * f))))
    # crop: the largest centred region with the box's aspect ratio...
    if src_w * box_h > src_h * box_w:
        rw, rh = max(1, min(src_w, round(src_h * box_w / box_h))), src_h
    else:
        rw, rh = src_w, max(1, min(src_h, round(src_w * box_h / box_w)))
    left, top = (src_w - rw) // 2, (src_h - rh) // 2
    region = (left, top, left + rw, top + rh)
    # ...scaled down to the box, or kept as it is when smaller (never upscaled).
    return Plan(region, (box_w, box_h) if rw > box_w else (rw, rh))


def thumbnail_filename(content_type: str) -> str:
    return f"thumbnail.{TYPE_EXTENSIONS.get(content_type, 'bin')}"


# -- making one (Pillow, in a worker thread) ---------------------------------------------------


def make_thumbnail(
    source: Path, box: tuple[int, int], method: str, animated: bool
) -> Thumbnail | Original:
    """Thumbnail the image file ``source`` into ``box``. Blocking: run it in a thread.

    Raises CannotThumbnail or TooLargeToThumbnail; never anything else.
    """
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(source, formats=DECODERS) as im:
            return _thumbnail(im, box, method, animated)
    except (CannotThumbnail, TooLargeToThumbnail):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
        raise TooLargeToThumbnail("Content is too large to thumbnail") from None
    except Image.UnidentifiedImageError:
        raise CannotThumbnail("the content is not a PNG, JPEG, GIF or WebP image") from None
    except Exception as e:  # decoders raise OSError, ValueError, SyntaxError, struct.error...
        raise CannotThumbnail(f"the image could not be decoded ({type(e).__name__})") from None


def _thumbnail(
    im: PILImage.Image, box: tuple[int, int], method: str, animated: bool
) -> Thumbnail | Original:
    src_w, src_h = im.size
    if src_w * src_h > MAX_PIXELS:
        raise TooLargeToThumbnail(
            f"Content is too large to thumbnail ({src_w}x{src_h} pixels, at most {MAX_PIXELS})"
        )
    fmt = im.format or ""
    frames = int(getattr(im, "n_frames", 1)) if getattr(im, "is_animated", False) else 1
    is_animated = frames > 1
    want_animation = (
        animated
        and is_animated
        and frames <= MAX_FRAMES
        and src_w * src_h * frames <= MAX_ANIMATED_SOURCE_PIXELS
    )
    orientation = 1 if want_animation else _orientation(im)
    w, h = (src_h, src_w) if orientation in _TRANSPOSED else (src_w, src_h)
    p = plan(w, h, box[0], box[1], method)
    if want_animation:
        out_w, out_h = p.size if p else (w, h)
        if out_w * out_h * frames > MAX_ANIMATED_OUTPUT_PIXELS:
            want_animation = False
    if p is None:
        if fmt in FORMAT_TYPES and orientation == 1 and (want_animation or not is_animated):
            return Original(FORMAT_TYPES[fmt])
        p = Plan((0, 0, w, h), (w, h))
    if want_animation:
        return _animated(im, p)
    return _static(im, p, fmt, orientation)


def _orientation(im: PILImage.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block is not worth refusing the image for
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _static(im: PILImage.Image, p: Plan, fmt: str, orientation: int) -> Thumbnail:
    from PIL import Image, ImageOps

    # The plan is in upright coordinates, for the full-size image.
    upright_w = im.size[1] if orientation in _TRANSPOSED else im.size[0]
    if fmt == "JPEG":
        # Decode at the smallest power-of-two reduction that is still large enough.
        rw, rh = p.region[2] - p.region[0], p.region[3] - p.region[1]
        f = min(1.0, max(p.size[0] / rw, p.size[1] / rh))
        im.draft("RGB", (math.ceil(im.size[0] * f), math.ceil(im.size[1] * f)))
    frame = ImageOps.exif_transpose(im) if orientation != 1 else im
    frame = _normalise_mode(frame)
    s = frame.size[0] / upright_w  # < 1 when draft() decoded at a reduced size
    left, top, right, bottom = (c * s for c in p.region)
    out = frame.resize(p.size, Image.Resampling.LANCZOS, box=(left, top, right, bottom))
    buf = io.BytesIO()
    if fmt == "JPEG" and out.mode in ("RGB", "L"):
        out.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
        content_type = "image/jpeg"
    else:
        out.save(buf, "PNG")
        content_type = "image/png"
    return Thumbnail(buf.getvalue(), content_type, out.size[0], out.size[1])


def _animated(im: PILImage.Image, p: Plan) -> Thumbnail:
    from PIL import Image, ImageSequence, features

    frames = []
    durations = []
    for frame in ImageSequence.Iterator(im):
        durations.append(int(frame.info.get("duration", 100)) or 100)
        frames.append(frame.convert("RGBA").resize(p.size, Image.Resampling.LANCZOS, box=p.region))
    buf = io.BytesIO()
    if features.check("webp"):
        frames[0].save(
            buf,
            "WEBP",
            save_all=True,
            append_images=frames[1:],
            duration=durations,
            loop=0,
            quality=WEBP_QUALITY,
        )
        content_type = "image/webp"
    else:
        frames[0].save(
            buf, "GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0
        )
        content_type = "image/gif"
    return Thumbnail(buf.getvalue(), content_type, p.size[0], p.size[1])


def _normalise_mode(im: PILImage.Image) -> PILImage.Image:
    """A mode LANCZOS can resize and PNG or JPEG can store: RGB, RGBA, L or LA."""
    if im.mode in ("RGB", "RGBA", "L", "LA"):
        return im
    if im.mode in ("P", "PA") or "transparency" in im.info:
        return im.convert("RGBA")
    return im.convert("RGB")
