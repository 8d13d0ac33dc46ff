"""The content repository endpoints: parse, call MediaService, reply.

Spec: api/client-server/authed-content-repo.yaml (GET /_matrix/client/v1/media/config,
/download/{serverName}/{mediaId}[/{fileName}], /thumbnail/{serverName}/{mediaId},
/preview_url) and content-repo.yaml (POST /_matrix/media/v3/upload,
POST /_matrix/media/v1/create, PUT /_matrix/media/v3/upload/{serverName}/{mediaId},
and the deprecated /_matrix/media/v3 download, thumbnail, config and preview_url).

Decisions:

- The unauthenticated /_matrix/media/v3/download and /thumbnail are frozen for all
  media: Croft was born after the spec 1.11 freeze ("Client behaviour"), so every
  upload is "after the freeze" and these answer 404 M_NOT_FOUND, pointing at
  /_matrix/client/v1/media. The deprecated /config is authenticated in the spec and
  answers like the new one.
- /preview_url answers 404 M_UNRECOGNIZED: this node never fetches URLs on a
  client's behalf (that would let a room make it contact any address).
- Upload bodies stream to disk; ``client_max_size`` in node/app.py does not bound them
  (aiohttp applies it to ``read()`` only), the service enforces media.max_upload_bytes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from node.accounts import Requester
from node.appkeys import NODE
from node.client_api.request import authenticated
from node.errors import MatrixError, invalid_param, json_response, missing_param, not_found
from node.media.disposition import SANDBOX_HEADERS, valid_content_type
from node.media.mxc import MXC
from node.media.service import DEFAULT_TIMEOUT_MS, Download
from node.media.thumbnails import METHODS

routes = web.RouteTableDef()
V1 = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/v3"
CREATE = "/_matrix/media/v1/create"

CHUNK_BYTES = 256 * 1024
MAX_FILENAME = 255
_UINT_RE = re.compile(r"[0-9]{1,9}")


# -- parsing ------------------------------------------------------------------------------------


def _mxc(request: web.Request) -> MXC:
    return MXC.from_parts(request.match_info["server_name"], request.match_info["media_id"])


def _uint(request: web.Request, name: str, default: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise missing_param(f"Missing '{name}' query parameter")
        return default
    if not _UINT_RE.fullmatch(raw):
        raise invalid_param(f"'{name}' must be a non-negative integer, got {raw!r}")
    return int(raw)


def _bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise invalid_param(f"'{name}' must be 'true' or 'false', got {raw!r}")


def _filename(value: str | None) -> str | None:
    if not value:
        return None
    if len(value) > MAX_FILENAME:
        raise invalid_param(f"File names are limited to {MAX_FILENAME} characters")
    return value


def _content_type(request: web.Request) -> str | None:
    # Spec 1.12: optional, application/octet-stream when absent.
    value = request.headers.get("Content-Type", "").strip()
    if not value:
        return None
    if not valid_content_type(value):
        raise invalid_param(f"Invalid Content-Type {value[:100]!r}")
    return value


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            yield chunk
    except (ConnectionError, HttpProcessingError) as e:
        raise MatrixError(400, "M_UNKNOWN", f"The upload was cut short: {e}") from None


def _reply(download: Download) -> web.StreamResponse:
    headers = {
        "Content-Type": download.content_type,
        "Content-Disposition": download.disposition,
        **SANDBOX_HEADERS,
    }
    if download.path is not None:
        return web.FileResponse(download.path, headers=headers)
    return web.Response(body=download.body, headers=headers)


# -- endpoints ----------------------------------------------------------------------------------


@routes.get(f"{V1}/config")
@routes.get(f"{LEGACY}/config")
@authenticated
async def media_config(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v1/media/config"""
    return json_response(request.app[NODE].media.media_config())


@routes.post(f"{LEGACY}/upload")
@authenticated
async def upload(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/media/v3/upload"""
    content_type = _content_type(request)
    filename = _filename(request.query.get("filename"))
    uri = await request.app[NODE].media.upload(
        requester.user_id,
        _body(request),
        content_length=request.content_length,
        content_type=content_type,
        filename=filename,
    )
    return json_response({"content_uri": uri})


@routes.post(CREATE)
@authenticated
async def create(request: web.Request, requester: Requester) -> web.Response:
    """POST /_matrix/media/v1/create"""
    uri, expires = await request.app[NODE].media.create(requester.user_id)
    return json_response({"content_uri": uri, "unused_expires_at": expires})


@routes.put(LEGACY + "/upload/{server_name}/{media_id}")
@authenticated
async def upload_to(request: web.Request, requester: Requester) -> web.Response:
    """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}"""
    mxc = _mxc(request)
    content_type = _content_type(request)
    filename = _filename(request.query.get("filename"))
    await request.app[NODE].media.upload_to(
        requester.user_id,
        mxc,
        _body(request),
        content_length=request.content_length,
        content_type=content_type,
        filename=filename,
    )
    return json_response({})


@routes.get(V1 + "/download/{server_name}/{media_id}")
@routes.get(V1 + "/download/{server_name}/{media_id}/{file_name}")
@authenticated
async def download(request: web.Request, requester: Requester) -> web.StreamResponse:
    """GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]"""
    mxc = _mxc(request)
    filename = _filename(request.match_info.get("file_name"))
    timeout_ms = _uint(request, "timeout_ms", DEFAULT_TIMEOUT_MS)
    return _reply(
        await request.app[NODE].media.download(mxc, filename=filename, timeout_ms=timeout_ms)
    )


@routes.get(V1 + "/thumbnail/{server_name}/{media_id}")
@authenticated
async def thumbnail(request: web.Request, requester: Requester) -> web.StreamResponse:
    """GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}"""
    mxc = _mxc(request)
    width, height = _uint(request, "width"), _uint(request, "height")
    if width < 1 or height < 1:
        raise invalid_param("'width' and 'height' must be at least 1")
    method = request.query.get("method", "scale")
    if method not in METHODS:
        raise invalid_param(f"'method' must be 'crop' or 'scale', got {method!r}")
    animated = _bool(request, "animated")
    timeout_ms = _uint(request, "timeout_ms", DEFAULT_TIMEOUT_MS)
    return _reply(
        await request.app[NODE].media.thumbnail(
            mxc, width, height, method, animated=animated, timeout_ms=timeout_ms
        )
    )


@routes.get(f"{V1}/preview_url")
@routes.get(f"{LEGACY}/preview_url")
@authenticated
async def preview_url(request: web.Request, requester: Requester) -> web.Response:
    """GET /_matrix/client/v1/media/preview_url: not offered."""
    raise MatrixError(
        404,
        "M_UNRECOGNIZED",
        "URL previews are not offered: this node never fetches URLs for a client",
    )


@routes.get(LEGACY + "/download/{server_name}/{media_id}")
@routes.get(LEGACY + "/download/{server_name}/{media_id}/{file_name}")
@routes.get(LEGACY + "/thumbnail/{server_name}/{media_id}")
async def frozen(request: web.Request) -> web.Response:
    """The deprecated unauthenticated GET /_matrix/media/v3/download and /thumbnail."""
    raise not_found(
        "Unauthenticated media access is frozen on this server (spec 1.11); use the"
        " authenticated /_matrix/client/v1/media endpoints"
    )
