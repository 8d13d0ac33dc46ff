"""Pure parts of the content repository, from tables: thumbnail sizes (spec
content_repo.md "Thumbnails"), Content-Disposition (authed-content-repo.yaml,
"Serving inline content", RFC 6266) and media ID checks ("Security considerations")."""

from __future__ import annotations

import pytest

from node.errors import MatrixError
from node.media.disposition import content_disposition, valid_content_type
from node.media.mxc import MXC, new_media_id
from node.media.thumbnails import Plan, plan, serving_box


@pytest.mark.parametrize(
    ("request_size", "method", "box"),
    [
        ((32, 32), "crop", (32, 32)),
        ((20, 20), "crop", (32, 32)),
        ((50, 50), "crop", (96, 96)),
        ((64, 32), "crop", (64, 32)),  # no spec size has that aspect: served as asked
        ((200, 200), "crop", (200, 200)),
        ((64, 64), "scale", (320, 240)),
        ((320, 240), "scale", (320, 240)),
        ((321, 240), "scale", (640, 480)),
        ((800, 600), "scale", (800, 600)),
        ((1000, 10), "scale", (1000, 10)),
    ],
)
def test_serving_box(request_size: tuple[int, int], method: str, box: tuple[int, int]) -> None:
    assert serving_box(*request_size, method) == box


@pytest.mark.parametrize(
    ("source", "box", "method", "expected"),
    [
        # smaller than the box: the original, never upscaled
        ((50, 50), (96, 96), "crop", None),
        ((320, 240), (320, 240), "scale", None),
        # scale: fit inside, keep the aspect ratio
        ((1000, 500), (320, 240), "scale", Plan((0, 0, 1000, 500), (320, 160))),
        ((500, 1000), (320, 240), "scale", Plan((0, 0, 500, 1000), (120, 240))),
        ((400, 100), (320, 240), "scale", Plan((0, 0, 400, 100), (320, 80))),
        # crop: centred region of the box's aspect, scaled to the box
        ((1000, 500), (96, 96), "crop", Plan((250, 0, 750, 500), (96, 96))),
        ((500, 1000), (96, 96), "crop", Plan((0, 250, 500, 750), (96, 96))),
        ((1000, 1000), (64, 32), "crop", Plan((0, 250, 1000, 750), (64, 32))),
        # crop of content smaller than the box on one side: cut, not scaled
        ((200, 50), (96, 96), "crop", Plan((75, 0, 125, 50), (50, 50))),
        # extreme aspect ratios keep at least one pixel
        ((1000, 1000), (1, 100000), "crop", Plan((499, 0, 500, 1000), (1, 1000))),
    ],
)
def test_plan(
    source: tuple[int, int], box: tuple[int, int], method: str, expected: Plan | None
) -> None:
    assert plan(*source, *box, method) == expected


@pytest.mark.parametrize(
    ("content_type", "filename", "header"),
    [
        ("image/png", None, "inline"),
        ("image/png", "cat.png", 'inline; filename="cat.png"'),
        ("IMAGE/PNG; x=y", "cat.png", 'inline; filename="cat.png"'),
        ("text/plain; charset=utf-8", "a b.txt", 'inline; filename="a b.txt"'),
        ("text/html", "page.html", 'attachment; filename="page.html"'),
        ("image/svg+xml", "x.svg", 'attachment; filename="x.svg"'),
        ("application/octet-stream", None, "attachment"),
        ("image/jpeg", "café.jpg", "inline; filename*=utf-8''caf%C3%A9.jpg"),
        ("image/jpeg", 'a"b.jpg', "inline; filename*=utf-8''a%22b.jpg"),
        ("image/jpeg", "a\\b;\r\n.jpg", "inline; filename*=utf-8''a%5Cb%3B%0D%0A.jpg"),
        ("image/jpeg", "../../x", 'inline; filename="../../x"'),  # a name, never a path
    ],
)
def test_content_disposition(content_type: str, filename: str | None, header: str) -> None:
    assert content_disposition(content_type, filename) == header


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("image/png", True),
        ("text/plain; charset=utf-8", True),
        ("application/vnd.example+json", True),
        ("png", False),
        ("image/png\x00", False),
        ("imäge/png", False),
        ("a/" + "b" * 300, False),
    ],
)
def test_valid_content_type(value: str, ok: bool) -> None:
    assert valid_content_type(value) is ok


@pytest.mark.parametrize(
    ("server", "media_id"),
    [
        ("example.org", ".."),
        ("example.org", "../etc"),
        ("example.org", "a/b"),
        ("example.org", "a.b"),
        ("example.org", "%2e%2e"),
        ("example.org", ""),
        ("example.org", "x" * 256),
        ("example.org", "abc\x00"),
        ("../..", "abc"),
        ("exa mple.org", "abc"),
        ("", "abc"),
    ],
)
def test_bad_mxc_parts_are_refused(server: str, media_id: str) -> None:
    with pytest.raises(MatrixError) as e:
        MXC.from_parts(server, media_id)
    assert (e.value.status, e.value.errcode) == (400, "M_INVALID_PARAM")


def test_new_media_ids_are_valid_and_distinct() -> None:
    ids = {new_media_id() for _ in range(1000)}
    assert len(ids) == 1000
    for media_id in ids:
        assert str(MXC.from_parts("example.org", media_id)) == f"mxc://example.org/{media_id}"
