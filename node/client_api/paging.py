"""Query parameters shared by the history endpoints: limits, booleans, directions and
room-event positions.

A position token is what /messages understands (node/client_api/sync.py): ``p<N>``
is the position just after the event with stream ordering N (negative for backfilled
history), and a /sync ``next_batch`` (``s...``) is read at its events position. Spec:
relations.yaml ("Can be a next_batch or prev_batch token from a previous call, or a
returned start token from /messages, or a next_batch token from /sync").
"""

from __future__ import annotations

from aiohttp import web

from node.errors import invalid_param
from node.sync.tokens import InvalidToken, StreamToken

MAX_POSITION = 2**62
MIN_POSITION = -MAX_POSITION


def int_param(
    request: web.Request, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    """An integer query parameter; above ``maximum`` is clamped, below ``minimum`` is an
    error (M_INVALID_PARAM)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_param(f"'{name}' must be an integer") from None
    if value < minimum:
        raise invalid_param(f"'{name}' must be at least {minimum}")
    return value if maximum is None else min(value, maximum)


def bool_param(request: web.Request, name: str) -> bool | None:
    """``true``/``false`` (None when absent)."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise invalid_param(f"'{name}' must be true or false")
    return raw == "true"


def dir_param(request: web.Request, default: str = "b") -> str:
    direction = request.query.get("dir", default)
    if direction not in ("b", "f"):
        raise invalid_param("'dir' must be 'b' or 'f'")
    return direction


def parse_position(token: str) -> int:
    """The events position of a ``p<N>`` or ``s...`` token (M_INVALID_PARAM otherwise).
    ``N`` may be negative: backfilled history is stored below 0
    (node/federation/backfill.py)."""
    position: int | None = None
    try:
        if token.startswith("p"):
            digits = token[2:] if token.startswith("p-") else token[1:]
            if digits.isascii() and digits.isdigit():
                position = int(token[1:])
        else:
            position = StreamToken.parse(token).get("events")
    except InvalidToken:
        pass
    # Beyond SQLite's integers: not ours either.
    if position is None or not MIN_POSITION <= position <= MAX_POSITION:
        raise invalid_param(f"Invalid pagination token {token[:40]!r}")
    return position


def position_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    return None if raw is None else parse_position(raw)
