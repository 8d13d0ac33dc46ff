"""Parsing at the edge: request bodies, access tokens, and the authenticated requester.

Spec: content/client-server-api/_index.md "Using access tokens" (Authorization: Bearer
header, or the deprecated access_token query parameter) and "Standard error response".
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from aiohttp import web

from node.accounts import Requester
from node.appkeys import NODE
from node.errors import MatrixError, bad_json, not_json

AuthedHandler = Callable[[web.Request, Requester], Awaitable[web.StreamResponse]]


async def json_object(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request body as a JSON object: M_NOT_JSON if it isn't JSON, M_BAD_JSON if not
    an object."""
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise not_json("Request body is empty; expected a JSON object")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise not_json("Content not JSON.") from None
    if not isinstance(body, dict):
        raise bad_json("Request body must be a JSON object")
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def access_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Malformed Authorization header")
        return token.strip()
    return request.query.get("access_token") or None


async def requester_of(request: web.Request) -> Requester:
    token = access_token(request)
    if token is None:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
    requester = await request.app[NODE].accounts.authenticate(token, request.remote)
    if requester is None:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown access token", soft_logout=False)
    return requester


def authenticated(handler: AuthedHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Decorate a handler that needs a logged-in user; it receives the Requester."""

    @wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        return await handler(request, await requester_of(request))

    return wrapper


def string_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing '{name}'")
        return None
    if not isinstance(value, str):
        raise bad_json(f"'{name}' must be a string")
    return value
