"""Matrix errors and the middleware that renders every failure as Matrix JSON.

Spec: content/client-server-api/_index.md "Standard error response" and
"Common error codes". A handler raises :class:`MatrixError`; anything else that
escapes a handler is logged and answered as 500 M_UNKNOWN without a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


class MatrixError(Exception):
    """An error with an HTTP status and a Matrix errcode, safe to show to the client."""

    def __init__(self, status: int, errcode: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode
        self.message = message
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.message, **self.extra}

    def to_response(self) -> web.Response:
        return json_response(self.to_json(), status=self.status)


# Constructors for the common cases, so handlers read as the spec does.
def bad_json(message: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", message)


def not_json(message: str = "Content not JSON.") -> MatrixError:
    return MatrixError(400, "M_NOT_JSON", message)


def missing_param(message: str) -> MatrixError:
    return MatrixError(400, "M_MISSING_PARAM", message)


def invalid_param(message: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", message)


def forbidden(message: str) -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", message)


def not_found(message: str = "Not found") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", message)


def unrecognized(message: str = "Unrecognized request") -> MatrixError:
    return MatrixError(404, "M_UNRECOGNIZED", message)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render MatrixError, aiohttp's HTTP errors and unexpected failures as Matrix JSON."""
    try:
        return await handler(request)
    except MatrixError as e:
        return e.to_response()
    except web.HTTPException as e:
        if e.status == 404:
            return unrecognized().to_response()
        if e.status == 405:
            return MatrixError(405, "M_UNRECOGNIZED", "Method not allowed").to_response()
        if e.status == 413:
            return MatrixError(413, "M_TOO_LARGE", "Request body too large").to_response()
        if e.status < 400:
            raise
        return MatrixError(e.status, "M_UNKNOWN", e.reason or "Error").to_response()
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return MatrixError(500, "M_UNKNOWN", "Internal server error").to_response()
