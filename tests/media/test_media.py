"""The content repository on a real node on loopback, with matrix-nio and raw HTTP.

Spec: authed-content-repo.yaml, content-repo.yaml, content_repo.md."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nio
import pytest
from PIL import Image
from yarl import URL

from node.app import RunningNode, serve
from node.config import Config, load_config
from node.media.store import content_path
from tests.conftest import OWNER, PASSWORD, SERVER_NAME

MEDIA = "/_matrix/client/v1/media"
UPLOAD = "/_matrix/media/v3/upload"
CREATE = "/_matrix/media/v1/create"


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
async def token(client_url: str, http: aiohttp.ClientSession) -> str:
    return await login(http, client_url)


async def login(http: aiohttp.ClientSession, url: str) -> str:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": OWNER},
        "password": PASSWORD,
    }
    async with http.post(f"{url}/_matrix/client/v3/login", json=body) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["access_token"])


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def upload(
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    data: Any,
    content_type: str | None = "application/octet-stream",
    filename: str | None = None,
    status: int = 200,
) -> dict[str, Any]:
    headers = auth(token)
    if content_type is not None:
        headers["Content-Type"] = content_type
    params = {"filename": filename} if filename is not None else None
    async with http.post(f"{url}{UPLOAD}", data=data, headers=headers, params=params) as r:
        body = await r.json()
        assert r.status == status, body
        return dict(body)


def media_id_of(uri: str) -> str:
    assert uri.startswith(f"mxc://{SERVER_NAME}/"), uri
    return uri.rsplit("/", 1)[1]


def image_bytes(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB", **save: Any) -> bytes:
    im = Image.new(mode, size)
    # A gradient, so scaling has something to do and JPEG something to encode.
    if mode == "RGB":
        im.putdata(
            [
                (x * 255 // size[0], y * 255 // size[1], 128)
                for y in range(size[1])
                for x in range(size[0])
            ]
        )
    buf = io.BytesIO()
    im.save(buf, fmt, **save)
    return buf.getvalue()


def gif_bytes(size: tuple[int, int], frames: int) -> bytes:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    images = [Image.new("RGB", size, colours[i % len(colours)]) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body without Content-Length (chunked transfer encoding)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def media_files(data_dir: Path) -> list[Path]:
    root = data_dir / "media"
    return sorted(p for p in root.rglob("*") if p.is_file())


# -- round trips ----------------------------------------------------------------------------------


async def test_nio_upload_download_and_thumbnail(client_url: str) -> None:
    png = image_bytes((400, 300))
    client = nio.AsyncClient(client_url, OWNER)
    try:
        await client.login(PASSWORD)
        # nio 0.26: upload -> POST /_matrix/media/v3/upload, download and thumbnail ->
        # the authenticated /_matrix/client/v1/media endpoints, config likewise.
        uploaded, _ = await client.upload(
            io.BufferedReader(io.BytesIO(png)),  # type: ignore[arg-type]
            content_type="image/png",
            filename="garden.png",
            filesize=len(png),
        )
        assert isinstance(uploaded, nio.UploadResponse), uploaded
        media_id = media_id_of(uploaded.content_uri)
        got = await client.download(mxc=uploaded.content_uri)
        assert isinstance(got, nio.MemoryDownloadResponse), got
        assert got.body == png
        assert got.content_type == "image/png"
        assert got.filename == "garden.png"
        renamed = await client.download(mxc=uploaded.content_uri, filename="other name.png")
        assert isinstance(renamed, nio.MemoryDownloadResponse), renamed
        assert renamed.filename == "other name.png"
        thumb = await client.thumbnail(SERVER_NAME, media_id, 96, 96, nio.ResizingMethod.crop)
        assert isinstance(thumb, nio.ThumbnailResponse), thumb
        assert Image.open(io.BytesIO(thumb.body)).size == (96, 96)
        conf = await client.content_repository_config()
        assert isinstance(conf, nio.ContentRepositoryConfigResponse), conf
        assert conf.upload_size == 100 * 1024**2  # the laptop profile
    finally:
        await client.close()


async def test_download_headers(client_url: str, http: aiohttp.ClientSession, token: str) -> None:
    cases = [
        ("text/plain; charset=utf-8", "notes.txt", b"hello", 'inline; filename="notes.txt"'),
        ("text/html", "page.html", b"<script>x</script>", 'attachment; filename="page.html"'),
        ("image/jpeg", "café.jpg", b"\xff\xd8", "inline; filename*=utf-8''caf%C3%A9.jpg"),
        (None, None, b"\x00\x01", "attachment"),
    ]
    for content_type, filename, data, disposition in cases:
        uri = (await upload(http, client_url, token, data, content_type, filename))["content_uri"]
        url = f"{client_url}{MEDIA}/download/{SERVER_NAME}/{media_id_of(uri)}"
        async with http.get(url, headers=auth(token)) as r:
            assert r.status == 200
            assert await r.read() == data
            assert r.headers["Content-Type"] == (content_type or "application/octet-stream")
            assert r.headers["Content-Disposition"] == disposition
            assert r.headers["Content-Security-Policy"].startswith("sandbox;")
            assert r.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
            assert r.headers["Access-Control-Allow-Origin"] == "*"
        async with http.get(url + "/new%20name.txt", headers=auth(token)) as r:
            assert r.status == 200
            assert r.headers["Content-Disposition"].endswith('; filename="new name.txt"')


async def test_config_and_unsupported_endpoints(
    client_url: str, http: aiohttp.ClientSession, token: str, config: Config
) -> None:
    for path in (f"{MEDIA}/config", "/_matrix/media/v3/config"):
        async with http.get(client_url + path, headers=auth(token)) as r:
            assert r.status == 200
            assert await r.json() == {"m.upload.size": config.media.max_upload_bytes}
    for path in (f"{MEDIA}/preview_url", "/_matrix/media/v3/preview_url"):
        async with http.get(
            client_url + path, params={"url": "http://127.0.0.1:1/"}, headers=auth(token)
        ) as r:
            assert r.status == 404
            assert (await r.json())["errcode"] == "M_UNRECOGNIZED"


async def test_unauthenticated_legacy_endpoints_are_frozen(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    png = image_bytes((200, 200))
    media_id = media_id_of((await upload(http, client_url, token, png, "image/png"))["content_uri"])
    base = f"{client_url}/_matrix/media/v3"
    for path in (
        f"/download/{SERVER_NAME}/{media_id}",
        f"/download/{SERVER_NAME}/{media_id}/x.png",
        f"/thumbnail/{SERVER_NAME}/{media_id}?width=32&height=32",
    ):
        for headers in ({}, auth(token)):
            async with http.get(base + path, headers=headers) as r:
                body = await r.json()
                assert r.status == 404, body
                assert body["errcode"] == "M_NOT_FOUND"
                assert "/_matrix/client/v1/media" in body["error"]


# -- thumbnails -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "fmt", "query", "size", "content_type"),
    [
        ((1000, 500), "PNG", "width=96&height=96&method=crop", (96, 96), "image/png"),
        ((1000, 500), "PNG", "width=32&height=32&method=crop", (32, 32), "image/png"),
        ((1000, 500), "PNG", "width=320&height=240&method=scale", (320, 160), "image/png"),
        ((1000, 500), "PNG", "width=100&height=100", (320, 160), "image/png"),  # scale default
        ((1200, 900), "JPEG", "width=640&height=480&method=scale", (640, 480), "image/jpeg"),
        ((1200, 900), "JPEG", "width=800&height=600&method=scale", (800, 600), "image/jpeg"),
        ((1200, 900), "JPEG", "width=96&height=96&method=crop", (96, 96), "image/jpeg"),
        ((1000, 1000), "PNG", "width=64&height=32&method=crop", (64, 32), "image/png"),
        ((1000, 1000), "WEBP", "width=96&height=96&method=crop", (96, 96), "image/png"),
        ((200, 50), "PNG", "width=96&height=96&method=crop", (50, 50), "image/png"),
    ],
)
async def test_thumbnail_sizes_and_formats(
    client_url: str,
    http: aiohttp.ClientSession,
    token: str,
    source: tuple[int, int],
    fmt: str,
    query: str,
    size: tuple[int, int],
    content_type: str,
) -> None:
    data = image_bytes(source, fmt)
    media_id = media_id_of(
        (await upload(http, client_url, token, data, "image/x-any"))["content_uri"]
    )
    url = f"{client_url}{MEDIA}/thumbnail/{SERVER_NAME}/{media_id}?{query}"
    for _ in range(2):  # made, then from the cache
        async with http.get(url, headers=auth(token)) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"] == content_type
            assert r.headers["Content-Disposition"].startswith('inline; filename="thumbnail.')
            im = Image.open(io.BytesIO(await r.read()))
            assert im.size == size
            assert im.format == content_type.split("/")[1].upper()


async def test_thumbnail_is_cached_on_disk(
    client_url: str, http: aiohttp.ClientSession, token: str, node: RunningNode
) -> None:
    media_id = media_id_of(
        (await upload(http, client_url, token, image_bytes((500, 500)), "image/png"))["content_uri"]
    )
    url = f"{client_url}{MEDIA}/thumbnail/{SERVER_NAME}/{media_id}?width=96&height=96&method=crop"
    async with http.get(url, headers=auth(token)) as r:
        first = await r.read()
    data_dir = node.node.config.data_dir
    cached = [p for p in media_files(data_dir) if "thumbnails" in p.parts]
    assert [p.name for p in cached] == ["96x96-crop"]
    assert cached[0].read_bytes() == first
    async with http.get(url, headers=auth(token)) as r:
        assert await r.read() == first


async def test_small_images_come_back_as_they_are(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    png = image_bytes((50, 40))
    media_id = media_id_of((await upload(http, client_url, token, png, "image/png"))["content_uri"])
    url = f"{client_url}{MEDIA}/thumbnail/{SERVER_NAME}/{media_id}?width=96&height=96&method=crop"
    async with http.get(url, headers=auth(token)) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "image/png"
        assert await r.read() == png  # never upscaled


async def test_animated_thumbnails(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    gif = gif_bytes((300, 200), frames=3)
    media_id = media_id_of((await upload(http, client_url, token, gif, "image/gif"))["content_uri"])
    base = f"{client_url}{MEDIA}/thumbnail/{SERVER_NAME}/{media_id}?width=96&height=96&method=crop"
    async with http.get(base + "&animated=true", headers=auth(token)) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "image/webp"
        im = Image.open(io.BytesIO(await r.read()))
        assert im.format == "WEBP" and im.size == (96, 96)
        assert getattr(im, "n_frames", 1) == 3
    for query in ("&animated=false", ""):
        async with http.get(base + query, headers=auth(token)) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "image/png"
            im = Image.open(io.BytesIO(await r.read()))
            assert im.size == (96, 96) and not getattr(im, "is_animated", False)
    # Smaller than the box: the original only when animation was asked for.
    small = gif_bytes((40, 30), frames=2)
    media_id = media_id_of(
        (await upload(http, client_url, token, small, "image/gif"))["content_uri"]
    )
    base = f"{client_url}{MEDIA}/thumbnail/{SERVER_NAME}/{media_id}?width=96&height=96"
    async with http.get(base + "&animated=true", headers=auth(token)) as r:
        assert r.headers["Content-Type"] == "image/gif"
        assert await r.read() == small
    async with http.get(base, headers=auth(token)) as r:
        assert r.headers["Content-Type"] == "image/png"
        im = Image.open(io.BytesIO(await r.read()))
        assert im.size == (40, 30) and not getattr(im, "is_animated", False)


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, "PNG")  # 100 megapixels in a few KiB
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "query", "status", "errcode"),
    [
        (b"just some text", "width=32&height=32", 400, "M_UNKNOWN"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "width=32&height=32", 400, "M_UNKNOWN"),
        (image_bytes((300, 300))[:200], "width=32&height=32", 400, "M_UNKNOWN"),  # truncated
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "width=32&height=32", 400, "M_UNKNOWN"),  # no EPS
        (image_bytes((300, 300), "BMP"), "width=32&height=32", 400, "M_UNKNOWN"),
        (_bomb(), "width=32&height=32", 413, "M_TOO_LARGE"),
        (image_bytes((64, 64)), "height=32", 400, "M_MISSING_PARAM"),
        (image_bytes((64, 64)), "width=32", 400, "M_MISSING_PARAM"),
        (image_bytes((64, 64)), "width=abc&height=32", 400, "M_INVALID_PARAM"),
        (image_bytes((64, 64)), "width=-5&height=32", 400, "M_INVALID_PARAM"),
        (image_bytes((64, 64)), "width=0&height=32", 400, "M_INVALID_PARAM"),
        (image_bytes((64, 64)), "width=1.5&height=32", 400, "M_INVALID_PARAM"),
        (image_bytes((64, 64)), "width=32&height=32&method=zoom", 400, "M_INVALID_PARAM"),
        (image_bytes((64, 64)), "width=32&height=32&animated=yes", 400, "M_INVALID_PARAM"),
        (image_bytes((64, 64)), "width=32&height=32&timeout_ms=soon", 400, "M_INVALID_PARAM"),
    ],
)
async def test_bad_thumbnail_requests(
    client_url: str,
    http: aiohttp.ClientSession,
    token: str,
    data: bytes,
    query: str,
    status: int,
    errcode: str,
) -> None:
    media_id = media_id_of(
        (await upload(http, client_url, token, data, "image/png"))["content_uri"]
    )
    url = f"{client_url}{MEDIA}/thumbnail/{SERVER_NAME}/{media_id}?{query}"
    async with http.get(url, headers=auth(token)) as r:
        body = await r.json()
        assert r.status == status, body
        assert body["errcode"] == errcode


# -- limits ---------------------------------------------------------------------------------------


@pytest.fixture
def small_config(data_dir: Path) -> Config:
    return load_config(
        data_dir,
        environ={},
        overrides={
            "media": {"max_upload_bytes": 1000},
            "history": {"max_store_bytes": 3 * 1024**2},
        },
    )


@pytest.fixture
async def small_node(small_config: Config) -> AsyncIterator[RunningNode]:
    running = await serve(small_config)
    try:
        yield running
    finally:
        await running.stop()


async def test_too_large_uploads_are_refused(
    small_node: RunningNode, http: aiohttp.ClientSession
) -> None:
    url = f"http://{small_node.listeners['client']}"
    token = await login(http, url)
    await upload(http, url, token, b"x" * 1000)  # exactly the limit is fine
    for body in (b"x" * 1001, chunks(b"x" * 5000, 100), b"x" * 10_000_000):
        got = await upload(http, url, token, body, status=413)
        assert got["errcode"] == "M_TOO_LARGE"
        assert "1000 B" in got["error"]
    data_dir = small_node.node.config.data_dir
    assert len([p for p in media_files(data_dir) if "content" in p.parts]) == 1
    assert not list((data_dir / "media" / "tmp").iterdir())


async def test_store_quota_counts_media(small_config: Config, http: aiohttp.ClientSession) -> None:
    # The store may hold 3 MiB: the database and the media together.
    running = await serve(small_config)
    try:
        url = f"http://{running.listeners['client']}"
        token = await login(http, url)
        media = running.node.media
        media.max_upload_bytes = 2 * 1024**2  # uploads may be large; the store is not
        await upload(http, url, token, b"a" * 1024**2)
        await upload(http, url, token, b"b" * 1024**2)
        for body in (b"c" * 1024**2, chunks(b"d" * 1024**2)):
            got = await upload(http, url, token, body, status=403)
            assert got["errcode"] == "M_FORBIDDEN"
            assert "store is full" in got["error"] and "history.max_store_bytes" in got["error"]
        assert not list((small_config.data_dir / "media" / "tmp").iterdir())
        await upload(http, url, token, b"small" * 100)  # what fits still fits
    finally:
        await running.stop()


# -- bad requests ---------------------------------------------------------------------------------


async def test_missing_and_remote_media(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    for path, needle in (
        (f"/download/{SERVER_NAME}/NoSuchMedia", "not found"),
        (f"/download/{SERVER_NAME}/NoSuchMedia/x.png", "not found"),
        (f"/thumbnail/{SERVER_NAME}/NoSuchMedia?width=32&height=32", "not found"),
        ("/download/matrix.org/SomeMedia", "federation"),
        ("/thumbnail/matrix.org/SomeMedia?width=32&height=32", "federation"),
    ):
        async with http.get(f"{client_url}{MEDIA}{path}", headers=auth(token)) as r:
            body = await r.json()
            assert r.status == 404, body
            assert body["errcode"] == "M_NOT_FOUND"
            assert needle in body["error"].lower()


@pytest.mark.parametrize(
    "raw_path",
    [
        "/download/127.0.0.1:8448/..%2F..%2Fsecret.txt",
        "/download/127.0.0.1:8448/%2e%2e",
        "/download/127.0.0.1:8448/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/download/127.0.0.1:8448/../../secret.txt",
        "/download/127.0.0.1:8448/a.b",
        "/download/..%2F..%2F/secret.txt",
        "/download/%2e%2e/secret.txt",
        "/download/127.0.0.1:8448/%00",
        "/download/127.0.0.1:8448/abc%252e%252e",
        "/thumbnail/127.0.0.1:8448/..%2Fsecret.txt?width=32&height=32",
        "/thumbnail/127.0.0.1:8448/%2e%2e?width=32&height=32",
    ],
)
async def test_path_traversal_is_refused(
    client_url: str, http: aiohttp.ClientSession, token: str, data_dir: Path, raw_path: str
) -> None:
    (data_dir / "secret.txt").write_text("TOP SECRET")
    (data_dir / "media" / "secret.txt").write_text("TOP SECRET")
    url = URL(f"{client_url}{MEDIA}{raw_path}", encoded=True)
    async with http.get(url, headers=auth(token)) as r:
        body = await r.read()
        assert r.status in (400, 404), (r.status, body)
        assert b"TOP SECRET" not in body
        assert (await r.json())["errcode"] in ("M_INVALID_PARAM", "M_NOT_FOUND", "M_UNRECOGNIZED")


async def test_upload_parameters_are_checked(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    got = await upload(http, client_url, token, b"x", "not a type", status=400)
    assert got["errcode"] == "M_INVALID_PARAM"
    got = await upload(http, client_url, token, b"x", filename="f" * 256, status=400)
    assert got["errcode"] == "M_INVALID_PARAM"
    got = await upload(http, client_url, token, b"", "text/plain")  # empty files are files
    url = f"{client_url}{MEDIA}/download/{SERVER_NAME}/{media_id_of(got['content_uri'])}"
    async with http.get(url, headers=auth(token)) as r:
        assert r.status == 200 and await r.read() == b""


async def test_unauthenticated_requests_are_refused(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    media_id = media_id_of((await upload(http, client_url, token, b"x"))["content_uri"])
    requests = [
        ("GET", f"{MEDIA}/config"),
        ("GET", f"{MEDIA}/download/{SERVER_NAME}/{media_id}"),
        ("GET", f"{MEDIA}/download/{SERVER_NAME}/{media_id}/x.bin"),
        ("GET", f"{MEDIA}/thumbnail/{SERVER_NAME}/{media_id}?width=32&height=32"),
        ("GET", f"{MEDIA}/preview_url?url=http://127.0.0.1/"),
        ("POST", UPLOAD),
        ("POST", CREATE),
        ("PUT", f"{UPLOAD}/{SERVER_NAME}/{media_id}"),
    ]
    for method, path in requests:
        async with http.request(method, client_url + path, data=b"x") as r:
            body = await r.json()
            assert (r.status, body["errcode"]) == (401, "M_MISSING_TOKEN"), (path, body)
        async with http.request(method, client_url + path, data=b"x", headers=auth("nope")) as r:
            body = await r.json()
            assert (r.status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN"), (path, body)


# -- asynchronous uploads -------------------------------------------------------------------------


async def test_create_then_upload(
    client_url: str, http: aiohttp.ClientSession, token: str, node: RunningNode
) -> None:
    async with http.post(client_url + CREATE, headers=auth(token), json={}) as r:
        created = await r.json()
        assert r.status == 200, created
    media_id = media_id_of(created["content_uri"])
    assert created["unused_expires_at"] > 0
    download = f"{client_url}{MEDIA}/download/{SERVER_NAME}/{media_id}"
    async with http.get(download + "?timeout_ms=0", headers=auth(token)) as r:
        body = await r.json()
        assert (r.status, body["errcode"]) == (504, "M_NOT_YET_UPLOADED")

    async def wait_for_it() -> bytes:
        async with http.get(download + "?timeout_ms=10000", headers=auth(token)) as r:
            assert r.status == 200
            assert r.headers["Content-Disposition"] == 'inline; filename="late.txt"'
            return await r.read()

    waiting = asyncio.create_task(wait_for_it())
    await asyncio.sleep(0.2)
    put = f"{client_url}{UPLOAD}/{SERVER_NAME}/{media_id}"
    headers = {**auth(token), "Content-Type": "text/plain"}
    async with http.put(
        put, data=b"arrived", headers=headers, params={"filename": "late.txt"}
    ) as r:
        assert r.status == 200, await r.text()
        assert await r.json() == {}
    assert await asyncio.wait_for(waiting, 5) == b"arrived"
    async with http.put(put, data=b"again", headers=headers) as r:
        body = await r.json()
        assert (r.status, body["errcode"]) == (409, "M_CANNOT_OVERWRITE_MEDIA")
    for path, status, errcode in (
        (f"{UPLOAD}/{SERVER_NAME}/NeverCreated", 404, "M_NOT_FOUND"),
        (f"{UPLOAD}/matrix.org/{media_id}", 404, "M_NOT_FOUND"),
        (f"{UPLOAD}/{SERVER_NAME}/bad.id", 400, "M_INVALID_PARAM"),
    ):
        async with http.put(client_url + path, data=b"x", headers=headers) as r:
            body = await r.json()
            assert (r.status, body["errcode"]) == (status, errcode), path
    # Someone else's pending media ID, and an expired one.
    store = node.node.media.store
    await store.create_pending("OthersMedia", "@bob:elsewhere", 2**62)
    await store.create_pending("ExpiredMedia", f"@{OWNER}:{SERVER_NAME}", 1)
    for media, status, errcode in (
        ("OthersMedia", 403, "M_FORBIDDEN"),
        ("ExpiredMedia", 404, "M_NOT_FOUND"),
    ):
        async with http.put(
            f"{client_url}{UPLOAD}/{SERVER_NAME}/{media}", data=b"x", headers=headers
        ) as r:
            body = await r.json()
            assert (r.status, body["errcode"]) == (status, errcode), media
    async with http.get(
        f"{client_url}{MEDIA}/download/{SERVER_NAME}/ExpiredMedia", headers=auth(token)
    ) as r:
        assert r.status == 404


async def test_pending_uploads_are_limited(
    client_url: str, http: aiohttp.ClientSession, token: str
) -> None:
    statuses = []
    for _ in range(33):
        async with http.post(client_url + CREATE, headers=auth(token)) as r:
            statuses.append((r.status, (await r.json()).get("errcode")))
    assert statuses[:32] == [(200, None)] * 32
    assert statuses[32] == (429, "M_LIMIT_EXCEEDED")


# -- durability -----------------------------------------------------------------------------------


async def test_media_survives_a_restart(config: Config, http: aiohttp.ClientSession) -> None:
    png = image_bytes((640, 480))
    running = await serve(config)
    try:
        url = f"http://{running.listeners['client']}"
        token = await login(http, url)
        uri = (await upload(http, url, token, png, "image/png", "photo.png"))["content_uri"]
    finally:
        await running.stop()
    media_root = config.data_dir / "media"
    # Leftovers of a crash: a half-written upload, and a file whose row never committed.
    (media_root / "tmp" / "upload-partial").write_bytes(b"half")
    orphan = content_path(media_root / "content", "ab" * 32)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"never acknowledged")
    running = await serve(config)
    try:
        url = f"http://{running.listeners['client']}"
        token = await login(http, url)
        download = f"{url}{MEDIA}/download/{SERVER_NAME}/{media_id_of(uri)}"
        async with http.get(download, headers=auth(token)) as r:
            assert r.status == 200
            assert await r.read() == png
            assert r.headers["Content-Disposition"] == 'inline; filename="photo.png"'
        assert not orphan.exists()
        assert not list((media_root / "tmp").iterdir())
    finally:
        await running.stop()


def test_pillow_is_not_loaded_to_run_the_node() -> None:
    code = (
        "import sys, node.cli, node.app, node.client_api, node.media.service;"
        "assert 'PIL' not in sys.modules, 'PIL imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
