"""Authenticating inbound federation requests: the X-Matrix ``Authorization`` header.

Spec: content/server-server-api.md "Authentication" -> "Request Authentication". Every
request under ``/_matrix/federation/`` except ``GET /_matrix/federation/v1/version``
must carry an X-Matrix header whose signature, by a current key of the ``origin``
server, covers ``{method, uri, origin, destination, content}``: ``uri`` is the request
target exactly as received (path and query), ``destination`` this server's name, and
``content`` the JSON-parsed body when there is one. The key endpoints
(``/_matrix/key/*``) are never authenticated.

Several ``Authorization`` headers may be sent: the request passes if any one X-Matrix
header verifies, and its origin is recorded under ``request[ORIGIN]``. A ``destination``
parameter naming another server, an origin equal to our own name, a missing or bad
signature, and an origin whose keys cannot be fetched all give 401 ``M_UNAUTHORIZED``;
a body that is not JSON gives 400 ``M_NOT_JSON``. Unknown endpoints fall through to
the router's 404 ``M_UNRECOGNIZED`` without authentication.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from node.errors import MatrixError, not_json
from node.events.canonical import InvalidJson, parse_json
from node.events.signing import SignatureError
from node.federation.common import ORIGIN
from node.federation.keyring import KeyNotFound, KeyRing
from node.federation.x_matrix import XMatrix, parse_x_matrix, signed_request_object

log = logging.getLogger(__name__)

# request[CONTENT]: the parsed JSON body of an authenticated request (None: no body).
CONTENT: web.RequestKey[object] = web.RequestKey("croft.federation.content", object)

FEDERATION_PREFIX = "/_matrix/federation/"
UNAUTHENTICATED = frozenset({"/_matrix/federation/v1/version"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def unauthorized(message: str) -> MatrixError:
    return MatrixError(401, "M_UNAUTHORIZED", message)


def needs_authentication(request: web.Request) -> bool:
    path = request.path
    if not path.startswith(FEDERATION_PREFIX) or path in UNAUTHENTICATED:
        return False
    # Unknown endpoints and methods: let the router answer 404/405 M_UNRECOGNIZED.
    return request.match_info.http_exception is None


def x_matrix_middleware(
    keyring: KeyRing,
    server_name: str,
    *,
    clock: Callable[[], float] = time.time,
    on_origin: Callable[[str], None] | None = None,
) -> Any:
    """The aiohttp middleware; put it after the error middleware. ``on_origin`` hears
    of every authenticated origin (the sender retries a server at once when it hears
    from it: it is up again)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if needs_authentication(request):
            now_ms = int(clock() * 1000)
            origin = await authenticate(request, keyring, server_name, now_ms)
            request[ORIGIN] = origin
            if on_origin is not None:
                on_origin(origin)
        return await handler(request)

    return middleware


async def authenticate(
    request: web.Request, keyring: KeyRing, server_name: str, now_ms: int
) -> str:
    """Check the request's X-Matrix headers; return the authenticated origin. Also
    leaves the parsed body in ``request[CONTENT]``. Raises MatrixError."""
    headers = [
        h for h in request.headers.getall("Authorization", []) if h[:9].lower() == "x-matrix "
    ]
    if not headers:
        raise unauthorized("Missing X-Matrix Authorization header")
    body = await request.read()
    content: object | None = None
    if body:
        try:
            content = parse_json(body)
        except InvalidJson as e:
            raise not_json(f"Content not JSON: {e}") from None
    request[CONTENT] = content
    uri = request.raw_path
    problems: list[str] = []
    for header in headers:
        try:
            creds = parse_x_matrix(header)
        except ValueError as e:
            problems.append(str(e))
            continue
        problem = await _check(creds, request.method, uri, content, keyring, server_name, now_ms)
        if problem is None:
            return creds.origin
        problems.append(problem)
    raise unauthorized(problems[0] if len(problems) == 1 else "; ".join(problems))


async def _check(
    creds: XMatrix,
    method: str,
    uri: str,
    content: object | None,
    keyring: KeyRing,
    server_name: str,
    now_ms: int,
) -> str | None:
    """None if ``creds`` authenticate the request, else why not."""
    if creds.destination is not None and creds.destination != server_name:
        return f"X-Matrix destination {creds.destination} is not this server ({server_name})"
    if creds.origin == server_name:
        return f"X-Matrix origin {creds.origin} is this server's own name"
    signed = signed_request_object(method, uri, creds.origin, server_name, content)
    signed["signatures"] = {creds.origin: {creds.key_id: creds.signature}}
    try:
        key = await keyring.get_verify_key(creds.origin, creds.key_id, valid_at_ms=now_ms)
    except KeyNotFound as e:
        log.info("federation request from %s: no key %s: %s", creds.origin, creds.key_id, e)
        return f"Cannot get key {creds.key_id} of {creds.origin}: {e}"
    try:
        _verify_request(signed, creds.origin, creds.key_id, key)
    except SignatureError as e:
        log.info("federation request from %s: %s", creds.origin, e)
        return f"X-Matrix signature of {creds.origin} does not verify: {e}"
    return None


def _verify_request(signed: dict[str, Any], origin: str, key_id: str, key: Any) -> None:
    """Check the X-Matrix signature over the request object. Request bodies are not
    events: they may hold floats or integers beyond 2**53 (a client's to-device
    content), which the sender's canonical JSON (matrix-org's canonicaljson, as in
    Synapse) encodes as they are; the strict event rules do not apply here."""
    import canonicaljson

    from node.events.hashing import decode_base64

    try:
        signature = decode_base64(signed["signatures"][origin][key_id])
        message = canonicaljson.encode_canonical_json(
            {k: v for k, v in signed.items() if k not in ("signatures", "unsigned")}
        )
        key.verify(message, signature)
    except SignatureError:
        raise
    except Exception as e:  # bad base64, unencodable values, a wrong signature
        raise SignatureError(f"{type(e).__name__}: {e}".rstrip(": ")) from None
