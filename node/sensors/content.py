"""The sensor event's content and the parsing of what a source gives (pure functions).

Spec: appendices "Canonical JSON" (event JSON holds integers only, so ``value`` is a
decimal string) and "Event types" naming (reverse-DNS: Croft's types are under
``io.croft.sensor.``). The content is documented in node/sensors/__init__.py.

What a source may give (the same rules for a command's stdout, a file's text and a
plugin's return value):

* one number: ``42000``, ``-3.5``, ``21.25\\n`` (surrounding white space ignored);
* a JSON object ``{"value": <number or numeric string>, "unit": "°C", "ts": <ms>}``,
  where ``unit`` and ``ts`` are optional (``unit`` overrides the configured one, ``ts``
  is the time of the reading in ms since the epoch, default: when it was read).

A source's ``scale`` multiplies the value (``0.001`` turns millidegrees into degrees),
exactly, in decimal arithmetic.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

NAMESPACE = "io.croft.sensor."
DEFAULT_EVENT_TYPE = NAMESPACE + "reading"
# Longest text accepted from a command or a file.
MAX_OUTPUT = 64 * 1024
# |value| must lie within 10**-MAX_EXPONENT .. 10**MAX_EXPONENT (or be 0): bounds the
# length of the decimal string.
MAX_EXPONENT = 30
MAX_UNIT = 32
MAX_TS = 2**53 - 1

# Event types: the client API takes any string; Croft's CLI and config accept printable
# ASCII with no space, at most 255 bytes (the spec's limit for type in a PDU).
_EVENT_TYPE_RE = re.compile(r"[!-~]{1,255}")
_READING_KEYS = frozenset({"value", "unit", "ts"})


class ReadingError(ValueError):
    """What a source gave is not a reading; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Reading:
    value: Decimal
    unit: str | None = None  # None: the source's configured unit
    ts: int | None = None  # None: the time it was read


def is_valid_event_type(event_type: str) -> bool:
    return bool(_EVENT_TYPE_RE.fullmatch(event_type)) and "/" not in event_type


def is_sensor_event_type(event_type: str) -> bool:
    return (
        is_valid_event_type(event_type)
        and event_type.startswith(NAMESPACE)
        and len(event_type) > len(NAMESPACE)
    )


def parse_text(text: str) -> Reading:
    """A reading from a command's stdout or a file's contents."""
    text = text.strip()
    if not text:
        raise ReadingError("empty output, expected a number or a JSON object")
    if text.startswith("{"):
        try:
            data = json.loads(text, parse_float=Decimal)
        except ValueError as e:
            raise ReadingError(f"not valid JSON: {e}") from None
        return parse_value(data)
    return Reading(to_decimal(text))


def parse_value(value: Any) -> Reading:
    """A reading from a plugin's return value (or parsed JSON): a number or an object."""
    if isinstance(value, Mapping):
        unknown = set(value) - _READING_KEYS
        if unknown:
            raise ReadingError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        if "value" not in value:
            raise ReadingError('the object has no "value"')
        unit = value.get("unit")
        if unit is not None and not isinstance(unit, str):
            raise ReadingError(f'"unit" must be a string, got {unit!r}')
        ts = value.get("ts")
        if ts is not None and (type(ts) is not int or not 0 <= ts <= MAX_TS):
            raise ReadingError(f'"ts" must be ms since the epoch (an integer), got {ts!r}')
        return Reading(to_decimal(value["value"]), check_unit(unit) if unit else unit, ts)
    return Reading(to_decimal(value))


def to_decimal(value: Any) -> Decimal:
    """A finite number, from an int, a float, a Decimal or a numeric string."""
    if isinstance(value, bool):
        raise ReadingError(f"expected a number, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ReadingError(f"expected a finite number, got {value!r}")
        value = repr(value)  # the shortest text that reads back as this float
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str) and len(value) <= 100:
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ReadingError(f"not a number: {value.strip()[:40]!r}") from None
    else:
        raise ReadingError(f"expected a number, got {str(value)[:40]!r}")
    if not number.is_finite():
        raise ReadingError(f"expected a finite number, got {value!r}")
    return number


def scaled(value: Decimal, scale: Decimal | None) -> Decimal:
    return value if scale is None else value * scale


def format_value(value: Decimal) -> str:
    """The content's ``value``: fixed-point text, no exponent, no trailing zeros."""
    if value == 0:
        return "0"
    if abs(value.adjusted()) > MAX_EXPONENT:
        raise ReadingError(f"value {value} is out of range (10^±{MAX_EXPONENT})")
    return format(value.normalize(), "f")


def check_unit(unit: str) -> str:
    if len(unit) > MAX_UNIT or any(ord(c) < 0x20 for c in unit):
        raise ReadingError(f"unit {unit[:40]!r} is longer than {MAX_UNIT} or has control chars")
    return unit


def reading_content(sensor_id: str, reading: Reading, unit: str, now_ms: int) -> dict[str, Any]:
    """The event content of one reading (node/sensors/__init__.py documents it), but
    ``seq``: the queue numbers readings as it stores them (queue.py)."""
    return {
        "sensor_id": sensor_id,
        "value": format_value(reading.value),
        "unit": reading.unit if reading.unit is not None else unit,
        "ts": reading.ts if reading.ts is not None else now_ms,
    }
