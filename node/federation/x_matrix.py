"""The X-Matrix ``Authorization`` header: building a signed request header, and parsing one.

Spec: content/server-server-api.md "Authentication" -> "Request Authentication". The
request (method, target URI from ``/_matrix/...`` with its ``?query``, origin,
destination, and the JSON-parsed body as ``content`` when there is one) is wrapped in a
JSON object and signed with the JSON signing algorithm; the signature travels as::

    Authorization: X-Matrix origin="a.example",destination="b.example",key="ed25519:k",sig="..."

The header follows RFC 9110 section 11.4 (credentials): the scheme, one or more spaces,
then comma-separated ``name=value`` parameters, with optional spaces and tabs around
commas (and around ``=``), names case-insensitive, values a token or a quoted string
(backslash escapes removed). For older servers, colons are allowed in unquoted values,
and so (as Synapse does) is any visible character but a quote, comma or backslash.
Unknown parameters are ignored. The signature parameter is ``sig`` in the spec's example
and sample code and ``signature`` in its prose: both are read.

Pure functions only: no I/O, no key look-ups (node/federation/auth.py does those).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.federation.keys import ServerKey
from node.ids import InvalidId, ServerName

SCHEME = "X-Matrix"

# RFC 9110 5.6.2 tchar: parameter names.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# Unquoted values: tokens, plus ':' (the spec's compatibility rule) and, as other servers
# accept them, any other visible character but '"', ',' and '\' (e.g. Base64's '/', '=').
_VALUE_CHAR = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', ",", "\\"}
_OWS = " \t"


@dataclass(frozen=True)
class XMatrix:
    """The parameters of one X-Matrix header. ``destination`` is None when the sender
    left it out (servers older than spec v1.3)."""

    origin: str
    destination: str | None
    key_id: str
    signature: str


def signed_request_object(
    method: str, uri: str, origin: str, destination: str, content: object | None
) -> dict[str, Any]:
    """The JSON object whose signature authenticates a request (step 1 of the spec).
    ``content`` is left out when the request has no body."""
    obj: dict[str, Any] = {
        "method": method,
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        obj["content"] = content
    return obj


def sign_request(
    server_key: ServerKey, method: str, uri: str, destination: str, content: object | None
) -> str:
    """The ``Authorization`` header value for a request from ``server_key``'s server."""
    origin = server_key.server_name
    signed = server_key.sign(signed_request_object(method, uri, origin, destination, content))
    sig = signed["signatures"][origin][server_key.key_id]
    return (
        f'{SCHEME} origin="{origin}",destination="{destination}",'
        f'key="{server_key.key_id}",sig="{sig}"'
    )


def parse_x_matrix(value: str) -> XMatrix:
    """Parse an X-Matrix ``Authorization`` header value. Raises ValueError naming the
    problem for anything else: another scheme, bad parameter syntax, a parameter given
    twice, a missing ``origin``/``key``/``sig``, or an origin or destination that is
    not a server name."""
    params = _parse_credentials(value)
    origin = params.get("origin")
    key_id = params.get("key")
    signature = params.get("sig", params.get("signature"))
    for name, got in (("origin", origin), ("key", key_id), ("sig", signature)):
        if not got:
            raise ValueError(f"X-Matrix header has no {name} parameter")
    assert origin is not None and key_id is not None and signature is not None
    destination = params.get("destination")
    _check_server_name("origin", origin)
    if destination is not None:
        _check_server_name("destination", destination)
    alg, colon, version = key_id.partition(":")
    if not colon or not alg or not version:
        raise ValueError(f"X-Matrix key {key_id!r} is not '<algorithm>:<version>'")
    return XMatrix(origin, destination, key_id, signature)


def _check_server_name(param: str, value: str) -> None:
    try:
        ServerName.parse(value)
    except InvalidId as e:
        raise ValueError(f"X-Matrix {param} is not a server name: {e}") from None


def _parse_credentials(value: str) -> dict[str, str]:
    """``auth-scheme 1*SP #auth-param`` -> {lower-case name: unescaped value}."""
    if not isinstance(value, str):
        raise ValueError("Authorization header is not text")
    scheme, space, rest = value.partition(" ")
    if scheme.lower() != SCHEME.lower():
        raise ValueError(f"Authorization scheme is not {SCHEME}")
    if not space:
        raise ValueError("X-Matrix header has no parameters")
    params: dict[str, str] = {}
    rest = rest.lstrip(" ")  # 1*SP after the scheme
    i, n = 0, len(rest)
    while True:
        i = _skip(rest, i, _OWS)
        # Empty list elements (",,") are allowed by the RFC 9110 list rule.
        if i < n and rest[i] == ",":
            i += 1
            continue
        if i >= n:
            break
        start = i
        while i < n and rest[i] in _TCHAR:
            i += 1
        name = rest[start:i].lower()
        if not name:
            raise ValueError(f"X-Matrix header: expected a parameter name at {rest[start:]!r}")
        i = _skip(rest, i, _OWS)
        if i >= n or rest[i] != "=":
            raise ValueError(f"X-Matrix header: parameter {name!r} has no value")
        i = _skip(rest, i + 1, _OWS)
        if i < n and rest[i] == '"':
            param_value, i = _quoted_string(rest, i)
        else:
            start = i
            while i < n and rest[i] in _VALUE_CHAR:
                i += 1
            param_value = rest[start:i]
            if not param_value:
                raise ValueError(f"X-Matrix header: parameter {name!r} has an empty value")
        if name in params:
            raise ValueError(f"X-Matrix header: parameter {name!r} appears twice")
        params[name] = param_value
        i = _skip(rest, i, _OWS)
        if i < n:
            if rest[i] != ",":
                raise ValueError(f"X-Matrix header: unexpected {rest[i]!r} after {name!r}")
            i += 1
    return params


def _skip(s: str, i: int, chars: str) -> int:
    while i < len(s) and s[i] in chars:
        i += 1
    return i


def _quoted_string(s: str, i: int) -> tuple[str, int]:
    """RFC 9110 quoted-string starting at s[i] == '"': (unescaped value, index after)."""
    out: list[str] = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= len(s):
                break
            out.append(s[i + 1])
            i += 2
            continue
        if c in "\r\n\x00" or (ord(c) < 0x20 and c != "\t") or c == "\x7f":
            raise ValueError("X-Matrix header: control character in a quoted value")
        out.append(c)
        i += 1
    raise ValueError("X-Matrix header: unterminated quoted value")
